// A multi-file app: `edge build` resolves these imports at build time, relative to each
// importing file, and the component holds every module.
import { greet } from "./lib/greet.js";
import config from "./config";

export default {
  async fetch(request) {
    if (new URL(request.url).pathname === "/dynamic") {
      try {
        await import("./config.js");
        return new Response("dynamic import worked");
      } catch (e) {
        return new Response(`${e.name}: ${e.message}`, { status: 500 });
      }
    }
    return new Response(`${greet(config.name)}\n`);
  },
};

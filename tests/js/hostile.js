// Hostile handlers for tests/e2e/js.rs: the server's limits apply to JavaScript as to any
// guest, and a killed request leaves the next one untouched.
export default {
  async fetch(request) {
    const path = new URL(request.url).pathname;
    if (path === "/spin") for (;;);
    if (path === "/hog") {
      const hoard = [];
      for (;;) hoard.push(new Uint8Array(1 << 20).fill(1));
    }
    if (path === "/recurse") {
      const deeper = (n) => deeper(n + 1) + 1;
      return new Response(String(deeper(0)));
    }
    return new Response("fine");
  },
};

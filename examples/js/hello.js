// The smallest edge function in JavaScript: the counterpart of examples/apps/src/hello.rs,
// measured against it by benches/js-vs-rust.sh.
export default {
  fetch() {
    return new Response("Hello from edge!\n", { headers: { "content-type": "text/plain; charset=utf-8" } });
  },
};

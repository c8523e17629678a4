// A service-worker style app: `addEventListener("fetch", …)` and `event.respondWith`.
addEventListener("fetch", (event) => {
  event.waitUntil(Promise.resolve().then(() => console.log("waitUntil ran")));
  event.respondWith(handle(event.request));
});

async function handle(request) {
  const url = new URL(request.url);
  return new Response(`${request.method} ${url.pathname}${url.search} via listener`, {
    headers: { "x-style": "listener" },
  });
}

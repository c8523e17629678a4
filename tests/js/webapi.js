// The JS SDK's conformance app for tests/e2e/js.rs: each route exercises one Web API and
// answers with what it observed, so the test compares values, not log lines.
console.log("top-level ran");
const topLevelStarted = Date.now();
let topLevelRuns = 0;
topLevelRuns++;
// Work done at top level, once, at build time: a table the handler only reads.
const squares = Array.from({ length: 1000 }, (_, i) => i * i);
await Promise.resolve();

const routes = {
  async "/headers"() {
    const h = new Headers({ "Content-Type": "text/plain" });
    h.append("X-Multi", "a");
    h.append("x-multi", "b");
    h.append("Set-Cookie", "a=1");
    h.append("Set-Cookie", "b=2");
    h.set("  X-Trim ".trim(), "  padded value\t");
    const errors = [];
    for (const bad of [["bad name", "v"], ["x-ok", "line\nbreak"]]) {
      try {
        new Headers([bad]);
      } catch (e) {
        errors.push(e.constructor.name);
      }
    }
    return Response.json({
      contentType: h.get("content-type"),
      multi: h.get("X-MULTI"),
      cookies: h.getSetCookie(),
      trimmed: h.get("x-trim"),
      has: [h.has("x-multi"), h.has("absent")],
      missing: h.get("absent"),
      entries: [...h],
      errors,
    });
  },
  async "/url"() {
    const u = new URL("https://user:pw@Example.COM:443/a/./b/../c%20d?q=1&r=a+b#frag");
    const rel = new URL("../x/y?z", "http://h.test/p/q/r");
    u.searchParams.append("s", "t u");
    const invalid = [];
    for (const bad of ["relative/path", "http://exa mple.com", "http://h:99999"]) {
      try {
        new URL(bad);
        invalid.push("parsed");
      } catch (e) {
        invalid.push(e.constructor.name);
      }
    }
    return Response.json({
      href: u.href,
      origin: u.origin,
      host: u.host,
      hostname: u.hostname,
      port: u.port,
      pathname: u.pathname,
      search: u.search,
      hash: u.hash,
      username: u.username,
      q: u.searchParams.get("q"),
      r: u.searchParams.get("r"),
      rel: rel.href,
      port8080: new URL("http://h:8080/").port,
      defaultPort: new URL("http://a.test:80/p?q=1").href,
      dots: new URL("http://a.test/x/../y/%2E/z").pathname,
      emptyQuery: new URL("https://a.test/p?").href,
      noPath: new URL("https://a.test").href,
      unicodePath: new URL("http://h/é").pathname,
      canParse: [URL.canParse("http://x/"), URL.canParse("nope")],
      invalid,
    });
  },
  async "/search"() {
    const p = new URLSearchParams("a=1&b=2&a=3&sp=x+y&enc=%26%3D");
    p.append("new", "v w&");
    p.delete("b");
    const sorted = new URLSearchParams({ z: "1", a: "2" });
    sorted.sort();
    return Response.json({
      all: p.getAll("a"),
      sp: p.get("sp"),
      enc: p.get("enc"),
      has: p.has("b"),
      string: p.toString(),
      sorted: sorted.toString(),
      size: p.size,
      fromPairs: new URLSearchParams([["k", "v"]]).toString(),
    });
  },
  async "/text"() {
    const bytes = new TextEncoder().encode("héllo €𝄞");
    const decoder = new TextDecoder();
    // The euro sign split across two chunks, decoded in streaming mode.
    const euro = new TextEncoder().encode("€");
    const streamed = decoder.decode(euro.subarray(0, 1), { stream: true }) + decoder.decode(euro.subarray(1));
    let fatal = "no error";
    try {
      new TextDecoder("utf-8", { fatal: true }).decode(new Uint8Array([0xff]));
    } catch (e) {
      fatal = e.constructor.name;
    }
    const into = new Uint8Array(4);
    return Response.json({
      bytes: Array.from(bytes),
      roundTrip: new TextDecoder().decode(bytes),
      streamed,
      lossy: new TextDecoder().decode(new Uint8Array([0x61, 0xff, 0x62])),
      fatal,
      encodeInto: new TextEncoder().encodeInto("a€b", into),
      btoa: btoa("hi!"),
      atob: atob("aGkh"),
    });
  },
  async "/random"() {
    const values = crypto.getRandomValues(new Uint8Array(16));
    let quota = "no error";
    try {
      crypto.getRandomValues(new Uint8Array(65537));
    } catch (e) {
      quota = e.name;
    }
    return Response.json({
      hex: Array.from(values, (b) => b.toString(16).padStart(2, "0")).join(""),
      uuid: crypto.randomUUID(),
      math: Math.random(),
      quota,
    });
  },
  async "/echo"(request) {
    return Response.json({
      method: request.method,
      url: request.url,
      contentType: request.headers.get("content-type"),
      text: await request.text(),
      used: request.bodyUsed,
    });
  },
  async "/late"(request) {
    // The served request's headers come from the host on first use: here, after its body
    // was read to the end.
    const text = await request.text();
    const copy = new Request(request);
    return Response.json({
      text,
      late: request.headers.get("x-late"),
      names: [...request.headers.keys()].filter((name) => name.startsWith("x-")),
      url: copy.url,
      copied: copy.headers.get("x-late"),
    });
  },
  async "/json"(request) {
    const data = await request.json();
    return Response.json({ received: data, doubled: data.n * 2 }, { status: 201, headers: { "x-kind": "json" } });
  },
  async "/bytes"(request) {
    const buffer = await request.arrayBuffer();
    const view = new Uint8Array(buffer);
    return new Response(`${view.length} ${view.reduce((a, b) => a + b, 0)}`);
  },
  async "/stream-in"(request) {
    const reader = request.body.getReader();
    let chunks = 0;
    let total = 0;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      chunks++;
      total += value.length;
    }
    return new Response(`${total} bytes in ${chunks} chunks`);
  },
  async "/stream-out"() {
    const encoder = new TextEncoder();
    let n = 0;
    const body = new ReadableStream({
      async pull(controller) {
        n++;
        if (n > 3) return controller.close();
        if (n > 1) await new Promise((resolve) => setTimeout(resolve, 150));
        controller.enqueue(encoder.encode(`chunk ${n}\n`));
      },
    });
    return new Response(body, { headers: { "content-type": "text/plain" } });
  },
  async "/state"() {
    globalThis.counter = (globalThis.counter ?? 0) + 1;
    return new Response(`counter=${globalThis.counter}`);
  },
  async "/toplevel"() {
    return Response.json({ topLevelRuns, squares: squares[999], builtAt: topLevelStarted });
  },
  async "/throw"() {
    throw new Error("boom from the handler");
  },
  async "/reject"() {
    await null;
    return Promise.reject(new TypeError("rejected on purpose"));
  },
  async "/not-a-response"() {
    return { status: 200 };
  },
  async "/fetch"(request) {
    const target = new URL(request.url).searchParams.get("to");
    try {
      const response = await fetch(target, { headers: { "x-from": "js" } });
      return new Response(`upstream ${response.status}: ${await response.text()}`);
    } catch (e) {
      return new Response(`fetch rejected: ${e.constructor.name}: ${e.message}`, { status: 502 });
    }
  },
  async "/env"(request, env) {
    return new Response(`GREETING=${env.GREETING}`);
  },
  async "/console"() {
    console.log("logged object", { a: 1, nested: { b: [1, 2] } });
    console.error("logged error %s=%d", "n", 42);
    return new Response("logged");
  },
  async "/timers"() {
    const start = performance.now();
    const order = [];
    setTimeout(() => order.push("timeout 20"), 20);
    setTimeout(() => order.push("timeout 0"), 0);
    queueMicrotask(() => order.push("microtask"));
    await new Promise((resolve) => setTimeout(resolve, 40));
    return Response.json({ order, waited: performance.now() - start >= 40 });
  },
  async "/redirect"() {
    return Response.redirect("https://example.com/elsewhere", 307);
  },
  async "/clone"() {
    const original = new Response("twice");
    const copy = original.clone();
    return new Response(`${await original.text()} ${await copy.text()}`);
  },
};

export default {
  async fetch(request, env, ctx) {
    const path = new URL(request.url).pathname;
    const route = routes[path];
    if (!route) return new Response(`no route ${path}\n`, { status: 404 });
    return route(request, env, ctx);
  },
};

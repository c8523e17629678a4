// env in fetch(request, env, ctx), as the end-to-end tests check it (tests/e2e/state.rs):
// GET /check runs every check and answers {name: result}; the manifest declares the
// stores `default` and `sessions`, a [config] table and an [env] table.
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/env") {
      const out = {};
      for (const [k, v] of Object.entries(env)) out[k] = typeof v === "string" ? v : `[${typeof v} ${v.constructor.name}]`;
      return Response.json(out);
    }
    if (url.pathname === "/env-object") {
      // env behaves as a plain object under every operation (it is built lazily).
      const r = {};
      r.has = "KV" in env && !("nope" in env);
      env.added = "1";
      r.set = env.added === "1" && Object.keys(env).includes("added");
      r.deleted = delete env.added && env.added === undefined;
      Object.defineProperty(env, "fixed", { value: 2, enumerable: true });
      r.defined = Object.getOwnPropertyDescriptor(env, "fixed").value === 2;
      r.spread = { ...env }.token === env.token;
      Object.freeze(env);
      r.frozen = Object.isFrozen(env) && Object.keys(env).includes("KV") && env.token !== undefined;
      return Response.json(r);
    }
    if (url.pathname === "/count") return new Response(String(await env.KV.increment("hits")));
    const r = {};
    await env.KV.put("text", "héllo");
    r.text = await env.KV.get("text");
    r.textType = await env.KV.get("text", { type: "text" });
    await env.KV.put("doc", JSON.stringify({ a: [1, 2] }));
    r.json = await env.KV.get("doc", "json");
    await env.KV.put("bytes", new Uint8Array([0, 255, 7]));
    r.arrayBuffer = Array.from(new Uint8Array(await env.KV.get("bytes", { type: "arrayBuffer" })));
    r.stream = await new Response(await env.KV.get("text", "stream")).text();
    r.missing = await env.KV.get("nope");
    await env.KV.delete("text");
    r.deleted = await env.KV.get("text");
    r.counter = [await env.KV.increment("n"), await env.KV.increment("n", 41), await env.KV.get("n")];
    // Stores are apart: `sessions` does not see `default`'s keys.
    await env.sessions.put("doc", "session doc");
    r.sessions = [await env.sessions.get("doc"), (await env.KV.get("doc", "json")).a.length];
    for (let i = 0; i < 25; i++) await env.KV.put(`user:${String(i).padStart(2, "0")}`, `u${i}`);
    const first = await env.KV.list({ prefix: "user:", limit: 10 });
    const second = await env.KV.list({ prefix: "user:", limit: 10, cursor: first.cursor });
    const third = await env.KV.list({ prefix: "user:", limit: 10, cursor: second.cursor });
    r.pages = [first, second, third].map((p) => [p.keys.length, p.list_complete, p.keys[0]?.name]);
    r.cursorIsString = typeof first.cursor === "string";
    r.all = (await env.KV.list()).keys.length;
    const err = async (f) => {
      try {
        await f();
        return "no error";
      } catch (e) {
        return `${e.name}: ${e.message}`;
      }
    };
    r.badType = await err(() => env.KV.get("doc", { type: "blob" }));
    r.expiration = await err(() => env.KV.put("k", "v", { expirationTtl: 60 }));
    r.badValue = await err(() => env.KV.put("k", 42));
    r.tooBig = await err(() => env.KV.put("big", "x".repeat(5000)));
    r.notCounter = await err(() => env.KV.increment("doc"));
    r.config = [env.greeting, env.GREETING, env.token ?? null];
    r.hasStoresVar = "EDGE_KV_STORES" in env;
    return Response.json(r);
  },
};

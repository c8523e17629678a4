// A URL shortener with a JSON API, on the app's key-value store: `edge build
// examples/js/shortener.js`, with a manifest that declares the store (see
// examples/js/shortener.toml).
//
//   POST   /api/links        {"url": "https://…", "slug"?: "name"}   201 {slug, url, short}
//   GET    /api/links        every link, 100 at a time (?cursor=…)   200 {links, cursor}
//   GET    /api/links/:slug  one link and its visit count            200, or 404
//   DELETE /api/links/:slug  (needs `authorization: Bearer ADMIN_TOKEN`, a secret)
//   GET    /:slug            302 to the URL, counting the visit
//
// `env.KV` is the store named `default`; `env.ADMIN_TOKEN` is a secret set with
// `edge secret set shortener ADMIN_TOKEN`, read on every request, so changing it needs no
// redeploy.

const json = (data, status = 200) =>
  Response.json(data, { status, headers: { "cache-control": "no-store" } });
const problem = (status, title, detail) =>
  Response.json({ status, title, detail }, { status, headers: { "content-type": "application/problem+json" } });

const SLUG = /^[A-Za-z0-9_-]{1,64}$/;
const ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789";

function randomSlug() {
  const bytes = crypto.getRandomValues(new Uint8Array(7));
  return Array.from(bytes, (b) => ALPHABET[b % ALPHABET.length]).join("");
}

async function create(request, env, origin) {
  let body;
  try {
    body = await request.json();
  } catch {
    return problem(400, "Bad JSON", "the body must be a JSON object {\"url\": …}");
  }
  let target;
  try {
    target = new URL(body?.url);
  } catch {
    return problem(422, "Bad URL", "`url` must be an absolute http or https URL");
  }
  if (target.protocol !== "http:" && target.protocol !== "https:")
    return problem(422, "Bad URL", "`url` must be an absolute http or https URL");
  const slug = body.slug ?? randomSlug();
  if (typeof slug !== "string" || !SLUG.test(slug))
    return problem(422, "Bad slug", "`slug` must be 1 to 64 letters, digits, `-` or `_`");
  if ((await env.KV.get(`link:${slug}`)) !== null) return problem(409, "Taken", `the slug \`${slug}\` is in use`);
  const link = { slug, url: target.href, created: new Date().toISOString() };
  await env.KV.put(`link:${slug}`, JSON.stringify(link));
  return json({ ...link, short: `${origin}/${slug}` }, 201);
}

async function show(env, slug) {
  const link = await env.KV.get(`link:${slug}`, { type: "json" });
  if (link === null) return problem(404, "Not found", `no link \`${slug}\``);
  const visits = Number((await env.KV.get(`visits:${slug}`)) ?? 0);
  return json({ ...link, visits });
}

async function list(env, url) {
  const page = await env.KV.list({ prefix: "link:", limit: 100, cursor: url.searchParams.get("cursor") ?? undefined });
  const links = await Promise.all(page.keys.map(({ name }) => env.KV.get(name, "json")));
  return json({ links, cursor: page.list_complete ? null : page.cursor });
}

async function remove(request, env, slug) {
  const token = env.ADMIN_TOKEN;
  if (!token || request.headers.get("authorization") !== `Bearer ${token}`)
    return problem(401, "Unauthorized", "deleting a link needs the admin token");
  if ((await env.KV.get(`link:${slug}`)) === null) return problem(404, "Not found", `no link \`${slug}\``);
  await env.KV.delete(`link:${slug}`);
  await env.KV.delete(`visits:${slug}`);
  return new Response(null, { status: 204 });
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const parts = url.pathname.split("/").filter(Boolean);
    if (parts[0] === "api" && parts[1] === "links") {
      if (parts.length === 2 && request.method === "POST") return create(request, env, url.origin);
      if (parts.length === 2 && request.method === "GET") return list(env, url);
      if (parts.length === 3 && request.method === "GET") return show(env, parts[2]);
      if (parts.length === 3 && request.method === "DELETE") return remove(request, env, parts[2]);
      return problem(405, "Method not allowed", `${request.method} ${url.pathname}`);
    }
    if (parts.length === 1 && request.method === "GET" && SLUG.test(parts[0])) {
      const link = await env.KV.get(`link:${parts[0]}`, "json");
      if (link === null) return problem(404, "Not found", `no link \`${parts[0]}\``);
      await env.KV.increment(`visits:${parts[0]}`);
      return Response.redirect(link.url, 302);
    }
    return problem(404, "Not found", "try POST /api/links");
  },
};

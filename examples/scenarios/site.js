// The static site mix: a page, its assets and the redirects old links hit, with checks on
// status and size. Against `native --app api` (or `--app site`, or the site on edge).
//
//   loadrig run examples/scenarios/site.js -e BASE_URL=http://127.0.0.1:8090
import http from "k6/http";
import { check, sleep } from "k6";

const BASE = __ENV.BASE_URL || "http://127.0.0.1:8090";
const ASSETS = ["/assets/style.css", "/assets/app.js", "/assets/logo.svg"];

export const options = {
  vus: 4,
  duration: "10s",
  thresholds: {
    "http_req_duration{name:page}": ["p(95)<50"],
    "http_req_duration{name:asset}": ["p(95)<50"],
    checks: ["rate>0.99"],
  },
};

export default function () {
  const page = http.get(`${BASE}/`, { tags: { name: "page" } });
  check(page, {
    "page is 200": (r) => r.status === 200,
    "page is HTML": (r) => r.headers["Content-Type"].startsWith("text/html"),
    "page is over 1 KB": (r) => r.body.length > 1024,
  });
  for (const path of ASSETS) {
    const r = http.get(`${BASE}${path}`, { tags: { name: "asset" } });
    check(r, { "asset is 200": (r) => r.status === 200, "asset has an ETag": (r) => !!r.headers["Etag"] });
  }
  // Old links: a permanent and a temporary redirect, followed.
  check(http.get(`${BASE}/index.html`, { tags: { name: "redirect" } }), { "old home redirects to /": (r) => r.status === 200 && r.url === `${BASE}/` });
  check(http.get(`${BASE}/blog`, { tags: { name: "redirect" } }), { "/blog ends at the notes": (r) => r.status === 200 && r.url.endsWith("/notes") });
  sleep(0.5);
}

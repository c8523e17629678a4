// Every k6 API item loadrig supports, each checked against k6's documented behaviour:
// the test runs this script against the native stand-in API and expects every check to
// pass. One check per row of the compatibility table in loadrig/README.md.
import http from "k6/http";
import { check, group, sleep, fail } from "k6";
import { Counter, Gauge, Rate, Trend } from "k6/metrics";
import { SharedArray } from "k6/data";
import encoding from "k6/encoding";
import { b64encode } from "k6/encoding";
import crypto from "k6/crypto";
import exec from "k6/execution";
import { textSummary } from "https://jslib.k6.io/k6-summary/0.0.2/index.js";
import { randomIntBetween, uuidv4 } from "https://jslib.k6.io/k6-utils/1.4.0/index.js";
import { greet, VERSION } from "./lib/util.js";

const BASE = __ENV.BASE_URL;
const users = new SharedArray("users", () => JSON.parse(open("./data/users.json")));
const bin = open("./data/users.json", "b");
const counter = new Counter("my_counter");
const gauge = new Gauge("my_gauge");
const rate = new Rate("my_rate");
const trend = new Trend("my_trend", true);
let perVu = 0; // lives across this VU's iterations
// Built at init, so in the snapshot, where the engine makes every object immortal (its
// reference count is never written again: vendor/README.md); a VU still changes them.
const made = { list: [1], text: "a", table: new Map([["n", 0]]) };
const wide = {}; // many properties, one deleted: a shape of its own, changed in place
for (let i = 0; i < 30; i++) wide["p" + i] = i;
delete wide.p0;

export const options = {
  scenarios: {
    main: { executor: "per-vu-iterations", vus: 2, iterations: 2 },
  },
  thresholds: { "http_req_duration{name:named}": ["p(99)<5000"], my_counter: ["count==4"] },
};

export function setup() {
  const r = http.post(`${BASE}/api/login`, JSON.stringify({ user: "k6", password: "secret" }), {
    headers: { "Content-Type": "application/json" },
  });
  return { token: r.json("token"), from: "setup" };
}

export default function (data) {
  perVu++;
  check(perVu, { "state persists across iterations": (n) => n === __ITER + 1 });
  made.list.push(__ITER);
  made.text += "b";
  made.table.set("n", made.table.get("n") + 1);
  wide["q" + __ITER] = __ITER;
  let odd = 0; // garbage in cycles that hold init-time objects: the cycle collector runs
  for (let i = 0; i < 20000; i++) {
    const a = { i, made, wide };
    a.self = { a };
    odd += a.self.a.i & 1;
  }
  check(made, {
    "objects made at init change and keep their changes across iterations": (m) =>
      m.list.length === __ITER + 2 && m.text === "a" + "b".repeat(__ITER + 1) &&
      m.table.get("n") === __ITER + 1 && Object.keys(wide).length === 30 + __ITER && odd === 10000,
  });
  check(__VU, { "__VU is 1 or 2": (v) => v === 1 || v === 2 });
  check(__ENV, { "__ENV has -e values": (e) => e.BASE_URL === BASE && e.EXTRA === "yes" });
  check(data, { "setup data reaches default": (d) => d.from === "setup" && typeof d.token === "string" });
  check(users, { "SharedArray from open()": (u) => u.length === 2 && u[1].name === "bob" && Object.isFrozen(u) });
  check(bin, { "open(path, 'b') is an ArrayBuffer": (b) => b instanceof ArrayBuffer && b.byteLength > 10 });
  check(greet("k6"), { "relative module import": (g) => g === "hello k6" && VERSION === 2 });

  group("http", () => {
    const r = http.get(`${BASE}/`, { tags: { name: "named" } });
    // A get without params takes a shorter path while the VU's jar is empty (its first
    // iteration here): the same Response, and the same error for no answer.
    check(http.get(`${BASE}/`), {
      "plain get has every field": (p) =>
        p.status === 200 && p.body === r.body && p.url === r.url && p.proto === "HTTP/1.1" && p.error === "" &&
        p.error_code === 0 && p.status_text === "200" && p.headers["Content-Type"] === r.headers["Content-Type"] &&
        p.timings.duration > 0 && p.request.method === "GET" && p.request.headers["User-Agent"] === r.request.headers["User-Agent"],
    });
    check(http.get("http://127.0.0.1:9/"), { "plain get refused": (p) => p.status === 0 && p.error_code === 1212 && p.url === "http://127.0.0.1:9/" });
    check(r, {
      "get status": (r) => r.status === 200,
      "body is text": (r) => typeof r.body === "string" && r.body.includes("<title>"),
      "canonical header names": (r) => typeof r.headers["Content-Type"] === "string" && r.headers["content-type"] === undefined,
      "timings": (r) => r.timings.duration > 0 && r.timings.waiting >= 0 && "blocked" in r.timings,
      "url and proto": (r) => r.url === `${BASE}/` && r.proto === "HTTP/1.1",
      "no error": (r) => r.error === "" && r.error_code === 0,
      "status_text and request": (r) => r.status_text === "200" && r.request.method === "GET" && r.request.headers["User-Agent"].startsWith("loadrig"),
      "JSON.stringify(res) has every field": (r) => {
        const j = JSON.parse(JSON.stringify(r));
        return j.status === 200 && j.headers["Content-Type"] === r.headers["Content-Type"] && j.timings.duration === r.timings.duration && j.status_text === "200" && j.request.url === r.url;
      },
      "fields can be replaced": (r) => {
        r.headers = { x: 1 };
        r.timings = 5;
        return r.headers.x === 1 && r.timings === 5 && r.status === 200;
      },
    });
    group("nested", () => {
      const auth = { headers: { Authorization: `Bearer ${data.token}`, "Content-Type": "application/json" } };
      const c = http.post(`${BASE}/api/items`, JSON.stringify({ name: "w" }), auth);
      check(c, { "post 201 and json(path)": (r) => r.status === 201 && r.json("name") === "w" });
      const id = c.json("id");
      check(http.put(`${BASE}/api/items/${id}`, JSON.stringify({ name: "x" }), auth), { "put": (r) => r.json().name === "x" });
      check(http.patch(`${BASE}/api/items/${id}`, null, auth), { "patch reaches the server": (r) => r.status === 405 });
      check(http.del(`${BASE}/api/items/${id}`, null, auth), { "del": (r) => r.status === 204 });
      check(http.request("GET", `${BASE}/api/items/${id}`, null, auth), { "request(method)": (r) => r.status === 404 });
    });
  });
  check(http.head(`${BASE}/`), { "head has no body": (r) => r.status === 200 && r.body === "" });
  check(http.options(`${BASE}/api/login`), { "options": (r) => r.status === 405 });
  check(http.get(`${BASE}/redirect/3`), { "redirects followed": (r) => r.status === 200 && r.url.endsWith("/redirect/0") });
  check(http.get(`${BASE}/redirect/3`, { redirects: 1 }), { "redirects limit": (r) => r.status === 302 });
  check(http.get(`${BASE}/cookies/set?flavour=choc`), { "cookies set and sent back": (r) => r.json("flavour") === "choc" });
  check(http.get(`${BASE}/cookies`), { "cookie jar persists": (r) => r.json("flavour") === "choc" });
  // Path and Expires, as RFC 6265 and k6's jar keep them.
  const raw = (...values) => `${BASE}/cookies/raw?` + values.map((v) => `h=${encodeURIComponent(v)}`).join("&");
  check(http.get(raw("deep=1; Path=/cookies/deep", "gone=1; Expires=Thu, 01 Jan 1970 00:00:00 GMT", "later=2; Expires=Fri, 01 Jan 2100 00:00:00 GMT; Path=/", "dir=3")), {
    "res.cookies lists the response's Set-Cookie": (r) => r.cookies.dir?.[0]?.value === "3" && r.cookies.deep?.[0]?.path === "/cookies/deep" && r.headers["Set-Cookie"].includes("dir=3"),
  });
  check(http.get(`${BASE}/cookies`), {
    "a cookie stays off paths outside its Path": (r) => r.json().deep === undefined && r.json().later === "2",
    "an Expires in the past removes the cookie": (r) => r.json().gone === undefined,
  });
  check(http.get(`${BASE}/cookies/deep/x`), {
    "a cookie is sent under its Path, and the default Path is the request's directory": (r) => r.json().deep === "1" && r.json().dir === "3",
  });
  http.get(raw("later=0; Max-Age=0; Path=/"));
  check(http.get(`${BASE}/cookies`), { "Max-Age=0 deletes": (r) => r.json().later === undefined });
  check(http.post(`${BASE}/api/login`, { user: "k6", password: "secret" }), {
    "object body is form-encoded": (r) => r.status === 401 && r.request.headers["Content-Type"] === "application/x-www-form-urlencoded",
  });
  check(http.get(`${BASE}/`, { responseType: "binary" }), { "responseType binary": (r) => r.body instanceof ArrayBuffer });
  check(http.get(`${BASE}/`, { responseType: "none" }), { "responseType none": (r) => r.body === null });
  check(http.get(`${BASE}/delay/500`, { timeout: "50ms" }), { "timeout gives an error": (r) => r.status === 0 && r.error !== "" && r.error_code === 1050 });
  check(http.get("http://127.0.0.1:9/"), { "connection refused": (r) => r.status === 0 && r.error_code === 1212 });
  const [a, b] = http.batch([`${BASE}/`, ["GET", `${BASE}/assets/style.css`]]);
  check([a, b], { "batch": ([a, b]) => a.status === 200 && b.status === 200 });
  const u = http.url`${BASE}/api/items/${42}`;
  check(u, { "http.url": (u) => u.url === `${BASE}/api/items/42` && u.name === "${}/api/items/${}" });

  check(null, {
    "b64 std": () => encoding.b64encode("hello?") === "aGVsbG8/",
    "b64 url": () => b64encode("hello?", "url") === "aGVsbG8_",
    "b64 rawstd": () => encoding.b64encode("hi", "rawstd") === "aGk",
    "b64 decode to string": () => encoding.b64decode("aGk=", "std", "s") === "hi",
    "md5": () => crypto.md5("hello", "hex") === "5d41402abc4b2a76b9719d911017c592",
    "sha1": () => crypto.sha1("hello", "hex") === "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d",
    "sha256": () => crypto.sha256("hello", "hex") === "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
    "sha384": () => crypto.sha384("hello", "hex").startsWith("59e1748777448c69de6b800d7a33bbfb9ff1b463e44354c3553bcdb9c666fa90"),
    "sha512": () => crypto.sha512("hello", "hex").startsWith("9b71d224bd62f3785d96d46ad3ea3d73319bfbc2890caadae2dff72519673ca7"),
    "hmac": () => crypto.hmac("sha256", "key", "The quick brown fox jumps over the lazy dog", "hex") === "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8",
    "createHash": () => crypto.createHash("sha256").update("hel").update("lo").digest("hex") === crypto.sha256("hello", "hex"),
    "createHMAC base64": () => crypto.createHMAC("sha1", "k").update("d").digest("base64").length === 28,
    "randomBytes": () => crypto.randomBytes(16).byteLength === 16,
    "execution": () => exec.scenario.name === "main" && exec.vu.idInTest === __VU,
    "k6-utils stand-in": () => randomIntBetween(3, 3) === 3 && uuidv4().length === 36,
    "textSummary stand-in": () => typeof textSummary === "function",
  });
  let threw = false;
  try {
    fail("boom");
  } catch (e) {
    threw = e.message === "boom";
  }
  check(threw, { "fail throws": (t) => t });
  counter.add(1);
  gauge.add(__VU, { kind: "vu" });
  rate.add(true);
  rate.add(0);
  trend.add(12.5);
  sleep(0.01);
}

export function teardown(data) {
  check(data, { "teardown gets setup data": (d) => d.from === "setup" });
}

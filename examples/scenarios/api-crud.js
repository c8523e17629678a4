// An API's CRUD flow: setup() logs in once and hands the token to every VU; each
// iteration creates, reads, updates and deletes an item, in groups. Against
// `native --app api`.
//
//   loadrig run examples/scenarios/api-crud.js -e BASE_URL=http://127.0.0.1:8090
import http from "k6/http";
import { check, group, fail, sleep } from "k6";
import { Trend } from "k6/metrics";

const BASE = __ENV.BASE_URL || "http://127.0.0.1:8090";
const crudTime = new Trend("crud_duration", true);

export const options = {
  scenarios: {
    crud: { executor: "ramping-vus", startVUs: 1, stages: [
      { duration: "3s", target: 5 },
      { duration: "4s", target: 5 },
      { duration: "3s", target: 0 },
    ] },
  },
  thresholds: {
    "http_req_duration{group:::items::create}": ["p(99)<100"],
    "checks{group:::items::read}": ["rate==1"],
    http_req_failed: ["rate<0.01"],
  },
};

export function setup() {
  const r = http.post(`${BASE}/api/login`, JSON.stringify({ user: "loadrig", password: "secret" }), {
    headers: { "Content-Type": "application/json" },
  });
  if (r.status !== 200) fail(`login failed: ${r.status} ${r.body}`);
  return { token: r.json("token") };
}

export default function ({ token }) {
  const params = { headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" } };
  const started = Date.now();
  group("items", () => {
    let id;
    group("create", () => {
      const r = http.post(`${BASE}/api/items`, JSON.stringify({ name: "widget", vu: __VU }), params);
      check(r, { "created": (r) => r.status === 201 });
      id = r.json("id");
    });
    const item = http.url`${BASE}/api/items/${id}`;
    group("read", () => {
      const r = http.get(item, params);
      check(r, { "read back": (r) => r.status === 200 && r.json("name") === "widget" });
    });
    group("update", () => {
      const r = http.put(item, JSON.stringify({ name: "gadget" }), params);
      check(r, { "updated": (r) => r.json("name") === "gadget" });
    });
    group("delete", () => {
      check(http.del(item, null, params), { "deleted": (r) => r.status === 204 });
    });
  });
  crudTime.add(Date.now() - started);
  sleep(0.2);
}

// An open-model test: iterations arrive at a fixed rate whatever the server does, the
// latency of each is measured from when it was due (coordinated omission corrected), and
// the run fails (exit 99) if the thresholds do not hold. Against `native --app api`.
//
//   loadrig run examples/scenarios/open-model.js -e BASE_URL=http://127.0.0.1:8090
import http from "k6/http";
import { check } from "k6";

const BASE = __ENV.BASE_URL || "http://127.0.0.1:8090";

export const options = {
  scenarios: {
    steady: {
      executor: "constant-arrival-rate",
      rate: 200,
      timeUnit: "1s",
      duration: "10s",
      preAllocatedVUs: 10,
      maxVUs: 50,
    },
    spike: {
      executor: "ramping-arrival-rate",
      startTime: "10s",
      startRate: 200,
      stages: [{ duration: "2s", target: 1000 }, { duration: "3s", target: 1000 }, { duration: "2s", target: 0 }],
      preAllocatedVUs: 20,
      maxVUs: 200,
    },
  },
  thresholds: {
    http_req_duration: ["p(99)<50", "p(99.9)<200"],
    dropped_iterations: ["count<10"],
    checks: [{ threshold: "rate>0.999", abortOnFail: true }],
  },
};

export default function () {
  const r = http.get(`${BASE}/delay/1`, { tags: { name: "delay" } });
  check(r, { "200": (r) => r.status === 200 });
}

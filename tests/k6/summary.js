// handleSummary with jslib's textSummary (the offline stand-in): the files it returns are
// written, stdout included, instead of loadrig's own report.
import http from "k6/http";
import { check } from "k6";
import { textSummary } from "https://jslib.k6.io/k6-summary/0.0.2/index.js";

export const options = { iterations: 3, thresholds: { checks: ["rate==1"] } };

export default function () {
  check(http.get(`${__ENV.BASE_URL}/`), { "home is 200": (r) => r.status === 200 });
}

export function handleSummary(data) {
  return {
    stdout: textSummary(data, { indent: " ", enableColors: false }),
    [__ENV.OUT]: JSON.stringify({ iterations: data.metrics.iterations.values.count, root: data.root_group }),
  };
}

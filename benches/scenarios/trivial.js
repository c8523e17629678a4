// The trivial script of the rate benchmark: one GET per iteration, no sleep.
import http from "k6/http";
export default function () {
  http.get(__ENV.BASE_URL + "/");
}

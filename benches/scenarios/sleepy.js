// The memory benchmark's VU: one GET, then a second of sleep (most VUs are asleep).
import http from "k6/http";
import { sleep } from "k6";
export default function () {
  http.get(__ENV.BASE_URL + "/");
  sleep(1);
}

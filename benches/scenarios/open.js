// The open-model accuracy benchmark's script (benches/scenario-open.sh): one GET per
// iteration under constant-arrival-rate, its rate, duration and VUs from -e.
import http from "k6/http";

export const options = {
  scenarios: {
    open: {
      executor: "constant-arrival-rate",
      rate: Number(__ENV.RATE),
      timeUnit: "1s",
      duration: __ENV.DURATION,
      preAllocatedVUs: Number(__ENV.VUS),
      maxVUs: Number(__ENV.MAX_VUS),
    },
  },
};

export default function () {
  http.get(__ENV.BASE_URL + "/");
}

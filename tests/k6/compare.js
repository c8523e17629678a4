// A short scenario for `loadrig compare --script`: both sides serve the site example.
import http from "k6/http";
import { check } from "k6";

export const options = { vus: 2, duration: "1s" };

export default function () {
  check(http.get(`${__ENV.BASE_URL}/`), { "page": (r) => r.status === 200 && r.body.includes("<title>") });
  check(http.get(`${__ENV.BASE_URL}/assets/style.css`), { "asset": (r) => r.status === 200 });
}

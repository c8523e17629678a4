// setup() fails.
import { fail } from "k6";
export function setup() {
  fail("no credentials");
}
export default function () {}

// A module the test scripts import by a relative path.
import { sleep } from "k6";
export const VERSION = 2;
export function greet(name) {
  sleep(0);
  return `hello ${name}`;
}

// A syntax error on line 4.
import http from "k6/http";
export default function () {
  const x = ;
}

// A k6 module loadrig does not have.
import ws from "k6/ws";
export default function () {}

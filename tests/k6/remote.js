// A remote import other than the two jslib stand-ins.
import { x } from "https://example.com/lib.js";
export default function () {}

// k6/ws against the native example's /ws echo: a session that sends text and binary
// messages, pings, uses the socket's timers and closes itself; a refused upgrade; an
// unreachable server. Every check must pass; the metrics are checked by the harness.
import ws from "k6/ws";
import { check } from "k6";

export const options = {
  vus: 2,
  iterations: 4,
  thresholds: { "ws_msgs_sent{flow:echo}": ["count>=20"], ws_ping: ["p(99)<5000"], checks: ["rate==1"] },
};

const base = __ENV.BASE_URL.replace("http://", "ws://");

export default function () {
  const seen = { open: 0, text: [], binary: 0, pongs: 0, closed: 0, ticks: 0 };
  const res = ws.connect(`${base}/ws`, { tags: { flow: "echo" } }, function (socket) {
    socket.on("open", () => {
      seen.open++;
      socket.send("hello");
      socket.send("world");
      socket.sendBinary(new Uint8Array([1, 2, 3]).buffer);
      socket.ping();
    });
    socket.on("message", (data) => seen.text.push(data));
    socket.on("binaryMessage", (buf) => (seen.binary += new Uint8Array(buf).length));
    socket.on("pong", () => seen.pongs++);
    socket.on("close", () => seen.closed++);
    socket.setInterval(() => {
      seen.ticks++;
      socket.send(`tick ${seen.ticks}`);
    }, 20);
    socket.setTimeout(() => socket.close(), 150);
  });
  check(res, { "connect status is 101": (r) => r && r.status === 101 });
  check(seen, {
    "open ran once": (s) => s.open === 1,
    "text echoed in order": (s) => s.text[0] === "hello" && s.text[1] === "world",
    "binary echoed": (s) => s.binary === 3,
    "pong received": (s) => s.pongs === 1,
    "interval ticked and its messages echoed": (s) => s.ticks >= 3 && s.text.includes("tick 3"),
    "close handler ran once": (s) => s.closed === 1,
  });

  const refused = ws.connect(`${base}/no-such-socket`, {}, () => {
    throw new Error("the callback must not run when the upgrade is refused");
  });
  check(refused, {
    "a plain 404 is not an upgrade": (r) => r.status === 404 && r.error !== "",
  });
  const down = ws.connect("ws://127.0.0.1:1/", { timeout: "2s" }, () => {});
  check(down, { "a closed port is an error, not a throw": (r) => r.status === 0 && r.error.includes("dial") });
}

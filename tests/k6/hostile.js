// VUs that misbehave, chosen by the HOSTILE variable; MAX bounds the scenario (its
// maxDuration, then a 300 ms graceful stop).
export const options = {
  scenarios: {
    s: { executor: "per-vu-iterations", vus: 2, iterations: 3, gracefulStop: "300ms", maxDuration: __ENV.MAX || "1s" },
  },
};
export default function () {
  switch (__ENV.HOSTILE) {
    case "spin":
      while (true) {}
    case "throw":
      throw new Error("iteration went wrong");
    case "memory": {
      const hog = [];
      for (;;) hog.push(new Array(1 << 20).fill(7));
    }
    case "recursion": {
      const f = (n) => f(n + 1) + 1;
      return f(0);
    }
  }
}

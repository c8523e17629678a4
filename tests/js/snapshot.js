// What initialization builds is in the snapshot, where the engine makes every object
// immortal (its reference count is never written again: vendor/README.md). Each request,
// in a fresh instance, changes those objects in every way that writes to them and answers
// with what it saw, which must be the same every time.
const config = { name: "snap", list: [1, 2, 3], nested: { deep: "x" } };
const greeting = "hello, " + "snapshot ".repeat(3);
const table = new Map([
  ["a", 1],
  ["b", 2],
]);
const seen = new WeakMap([[config, "config"]]);
class Counter {
  constructor() {
    this.n = 0;
  }
  bump() {
    return ++this.n;
  }
}
const counter = new Counter();
let replaced = { old: true };
const wide = {}; // many properties, one deleted: a shape of its own, changed in place
for (let i = 0; i < 40; i++) wide["k" + i] = i;
delete wide.k0;
// Shapes: initialization keeps the shape of every step of an object's growth, and the
// snapshot shares them (vendor/README.md, "retained shapes"). Objects built then, and
// objects a request builds the same way, must each keep their own properties.
class Point {
  #x;
  #y;
  constructor(x, y) {
    this.#x = x;
    this.#y = y;
  }
  get sum() {
    return this.#x + this.#y;
  }
}
const origin = new Point(1, 2);
const steps = { a: 1 };
steps.b = 2;
steps.c = 3;
const sibling = { a: 1, b: 2 }; // the shape of one of `steps`' steps
// A dictionary grown key by key: the kept shapes stop at its first steps (a copy at
// every step would be quadratic in its size, and this build would run out of memory).
const dict = {};
for (let i = 0; i < 20000; i++) dict["key" + i] = i;
{
  // A prototype that dies with a garbage cycle, while its shape would be kept.
  const doomed = Object.create({ kind: "gone" });
  doomed.self = doomed;
  doomed.x = 1;
}

export default {
  fetch() {
    const out = {};
    config.extra = "added";
    config.list.push(4);
    config.nested.deep += "y";
    delete config.name;
    wide.k40 = 40;
    delete wide.k1;
    out.greeting = greeting + "!";
    out.greetingLength = greeting.length;
    table.set("c", 3);
    table.delete("a");
    out.table = [...table];
    out.weak = seen.get(config);
    out.count = [counter.bump(), counter.bump()];
    const prior = replaced; // the last reference to an init-time object goes
    replaced = { old: false };
    out.prior = prior.old;
    let odd = 0; // garbage in cycles that hold init-time objects: the cycle collector runs
    for (let i = 0; i < 20000; i++) {
      const a = { i, config, wide };
      a.self = { a };
      odd += a.self.a.i & 1;
    }
    out.odd = odd;
    const point = new Point(3, 4);
    out.points = [origin.sum, point.sum, new Point(5, 6).sum];
    const grown = { a: 10 };
    grown.b = 20;
    grown.c = 30;
    grown.d = 40;
    delete grown.b;
    steps.d = 4;
    Object.defineProperty(sibling, "a", { writable: false });
    let refused = false;
    try {
      sibling.a = 2;
    } catch {
      refused = true;
    }
    const twin = { a: 1, b: 2 };
    twin.a = 7;
    Object.freeze(steps);
    const fresh = Object.create({ kind: "new" });
    fresh.self = fresh;
    fresh.x = 2;
    out.shapes = {
      grown: Object.entries(grown),
      steps: Object.entries(steps),
      frozen: Object.isFrozen(steps),
      refused,
      sibling: [sibling.a, Object.getOwnPropertyDescriptor(sibling, "a").writable],
      twin: [twin.a, Object.getOwnPropertyDescriptor(twin, "a").writable, Object.isFrozen(twin)],
      fresh: [fresh.kind, fresh.x],
      dict: [Object.keys(dict).length, dict.key0, dict.key19999],
    };
    dict.extra = true;
    out.config = config;
    out.wide = Object.keys(wide).length;
    return Response.json(out);
  },
};

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
    out.config = config;
    out.wide = Object.keys(wide).length;
    return Response.json(out);
  },
};

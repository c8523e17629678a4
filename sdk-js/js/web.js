// edge:web.js — the Web APIs of edge's JS SDK, written on QuickJS-NG and a few native
// functions (`__edge`, see engine/src/lib.rs).
//
// Evaluated once, at build time, before the app's module; Wizer snapshots the result, so
// none of this is parsed or run per request. Evaluates to the hooks the engine calls:
// `setApp` (after the module ran), `dispatch` (per request), `nextTimer` and `runTimers`
// (the event loop).
(() => {
  const native = globalThis.__edge;
  delete globalThis.__edge;

  const define = (name, value) =>
    Object.defineProperty(globalThis, name, { value, writable: true, configurable: true });

  // ---------------------------------------------------------------------------- errors

  class DOMException extends Error {
    constructor(message = "", name = "Error") {
      super(message);
      Object.defineProperty(this, "name", { value: String(name), configurable: true });
    }
  }
  if (typeof globalThis.DOMException !== "function") define("DOMException", DOMException);

  // ---------------------------------------------------------------------------- bytes

  /** A Uint8Array over any BufferSource, without copying. */
  const asBytes = (data) => {
    if (data instanceof Uint8Array) return data;
    if (data instanceof ArrayBuffer) return new Uint8Array(data);
    if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    return null;
  };

  const concat = (chunks, total) => {
    if (chunks.length === 1) return chunks[0];
    const out = new Uint8Array(total);
    let at = 0;
    for (const chunk of chunks) {
      out.set(chunk, at);
      at += chunk.length;
    }
    return out;
  };

  // ------------------------------------------------------------------ TextEncoder/Decoder

  class TextEncoder {
    get encoding() {
      return "utf-8";
    }
    encode(input = "") {
      return native.encode(String(input));
    }
    encodeInto(input, destination) {
      const bytes = native.encode(String(input));
      let written = Math.min(bytes.length, destination.length);
      // Never split a character: back up to the start of an incomplete sequence.
      if (written < bytes.length) while (written > 0 && (bytes[written] & 0xc0) === 0x80) written--;
      destination.set(bytes.subarray(0, written));
      const read = native.decode(bytes.subarray(0, written)).length;
      return { read, written };
    }
  }

  const UTF8_LABELS = new Set(["utf-8", "utf8", "unicode-1-1-utf-8", "unicode11utf8", "unicode20utf8", "x-unicode20utf8"]);

  class TextDecoder {
    #fatal;
    #ignoreBOM;
    #pending = null;
    #started = false;
    constructor(label = "utf-8", options = {}) {
      if (!UTF8_LABELS.has(String(label).trim().toLowerCase()))
        throw new RangeError(`The encoding "${label}" is not supported (edge decodes utf-8 only)`);
      this.#fatal = Boolean(options.fatal);
      this.#ignoreBOM = Boolean(options.ignoreBOM);
    }
    get encoding() {
      return "utf-8";
    }
    get fatal() {
      return this.#fatal;
    }
    get ignoreBOM() {
      return this.#ignoreBOM;
    }
    decode(input, options = {}) {
      let bytes = input === undefined ? new Uint8Array(0) : asBytes(input);
      if (bytes === null) throw new TypeError("TextDecoder.decode: input is not a BufferSource");
      if (this.#pending) {
        bytes = concat([this.#pending, bytes], this.#pending.length + bytes.length);
        this.#pending = null;
      }
      if (options.stream) {
        // Keep an incomplete trailing sequence for the next call.
        let cut = bytes.length;
        for (let back = 1; back <= 3 && back <= bytes.length; back++) {
          const b = bytes[bytes.length - back];
          if ((b & 0xc0) === 0x80) continue;
          const need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
          if (need > back) cut = bytes.length - back;
          break;
        }
        if (cut < bytes.length) {
          this.#pending = bytes.slice(cut);
          bytes = bytes.subarray(0, cut);
        }
      }
      if (!this.#started && !this.#ignoreBOM && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf)
        bytes = bytes.subarray(3);
      if (bytes.length > 0) this.#started = Boolean(options.stream);
      if (!options.stream) this.#started = false;
      return native.decode(bytes, this.#fatal);
    }
  }

  // ------------------------------------------------------------------------- console

  const inspect = (value, depth = 0, seen = []) => {
    switch (typeof value) {
      case "string":
        return depth === 0 ? value : JSON.stringify(value);
      case "function":
        return `[Function: ${value.name || "(anonymous)"}]`;
      case "bigint":
        return `${value}n`;
      case "symbol":
        return value.toString();
      case "object":
        break;
      default:
        return String(value);
    }
    if (value === null) return "null";
    if (value instanceof Error) return value.stack ? `${value.name}: ${value.message}\n${value.stack.trimEnd()}` : String(value);
    if (seen.includes(value)) return "[Circular]";
    if (depth > 2) return Array.isArray(value) ? "[Array]" : "[Object]";
    seen = [...seen, value];
    const inner = (v) => inspect(v, depth + 1, seen);
    if (Array.isArray(value)) return `[ ${value.map(inner).join(", ")} ]`;
    if (value instanceof Map) return `Map(${value.size}) { ${[...value].map(([k, v]) => `${inner(k)} => ${inner(v)}`).join(", ")} }`;
    if (value instanceof Set) return `Set(${value.size}) { ${[...value].map(inner).join(", ")} }`;
    if (value instanceof Date) return value.toISOString();
    if (ArrayBuffer.isView(value)) return `${value.constructor.name}(${value.length}) [ ${Array.from(value).join(", ")} ]`;
    if (value instanceof Headers || value instanceof URLSearchParams)
      return `${value.constructor.name} { ${[...value].map(([k, v]) => `${JSON.stringify(k)}: ${JSON.stringify(v)}`).join(", ")} }`;
    if (value instanceof URL) return `URL ${JSON.stringify(value.href)}`;
    const name = value.constructor && value.constructor !== Object ? `${value.constructor.name} ` : "";
    const keys = Object.keys(value);
    if (keys.length === 0) return `${name}{}`;
    const key = (k) => (/^[A-Za-z_$][\w$]*$/.test(k) ? k : JSON.stringify(k));
    return `${name}{ ${keys.map((k) => `${key(k)}: ${inner(value[k])}`).join(", ")} }`;
  };

  const format = (args) => {
    if (typeof args[0] === "string" && args[0].includes("%")) {
      let rest = args.slice(1);
      const head = args[0].replace(/%([sdifoOjc%])/g, (match, spec) => {
        if (spec === "%") return "%";
        if (rest.length === 0) return match;
        const arg = rest.shift();
        switch (spec) {
          case "s":
            return typeof arg === "string" ? arg : inspect(arg, 1);
          case "d":
          case "i":
            return String(spec === "i" ? Math.trunc(Number(arg)) : Number(arg));
          case "f":
            return String(Number(arg));
          case "j":
            return JSON.stringify(arg);
          case "c":
            return "";
          default:
            return inspect(arg, 1);
        }
      });
      args = [head, ...rest];
    }
    return args.map((a) => inspect(a)).join(" ");
  };

  const counts = new Map();
  const timings = new Map();
  const out = (args) => native.print(`${format(args)}\n`, false);
  const err = (args) => native.print(`${format(args)}\n`, true);
  const console = {
    log: (...args) => out(args),
    info: (...args) => out(args),
    debug: (...args) => out(args),
    warn: (...args) => err(args),
    error: (...args) => err(args),
    trace: (...args) => err([...args, `\n${new Error().stack.split("\n").slice(1).join("\n")}`]),
    assert: (ok, ...args) => ok || err(["Assertion failed:", ...args]),
    dir: (value) => out([inspect(value, 1)]),
    count: (label = "default") => {
      counts.set(label, (counts.get(label) ?? 0) + 1);
      out([`${label}: ${counts.get(label)}`]);
    },
    countReset: (label = "default") => counts.delete(label),
    time: (label = "default") => timings.set(label, native.now()),
    timeEnd: (label = "default") => {
      if (timings.has(label)) out([`${label}: ${(native.now() - timings.get(label)).toFixed(3)}ms`]);
      timings.delete(label);
    },
    timeLog: (label = "default", ...args) =>
      timings.has(label) && out([`${label}: ${(native.now() - timings.get(label)).toFixed(3)}ms`, ...args]),
  };

  // ------------------------------------------------------------------------- timers

  let timerSeq = 0;
  const timers = new Map();
  const addTimer = (fn, ms, args, repeat) => {
    if (typeof fn !== "function") throw new TypeError("timer callback is not a function");
    const delay = Math.max(0, Number(ms) || 0);
    const id = ++timerSeq;
    timers.set(id, { at: native.now() + delay, fn, args, repeat: repeat ? Math.max(delay, 1) : 0 });
    return id;
  };
  const setTimeout = (fn, ms, ...args) => addTimer(fn, ms, args, false);
  const setInterval = (fn, ms, ...args) => addTimer(fn, ms, args, true);
  const clearTimeout = (id) => void timers.delete(id);
  const queueMicrotask = (fn) => {
    if (typeof fn !== "function") throw new TypeError("queueMicrotask: callback is not a function");
    Promise.resolve().then(fn);
  };

  /** Milliseconds until the earliest timer, `undefined` if there is none. */
  const nextTimer = () => {
    let at = Infinity;
    for (const timer of timers.values()) at = Math.min(at, timer.at);
    return at === Infinity ? undefined : Math.max(0, at - native.now());
  };

  /** Runs every due timer, in order of due time. */
  const runTimers = () => {
    const now = native.now();
    const due = [...timers].filter(([, t]) => t.at <= now).sort((a, b) => a[1].at - b[1].at || a[0] - b[0]);
    for (const [id, timer] of due) {
      if (!timers.has(id)) continue;
      if (timer.repeat) timer.at = now + timer.repeat;
      else timers.delete(id);
      try {
        timer.fn(...timer.args);
      } catch (e) {
        console.error("Uncaught (in timer)", e);
      }
    }
  };

  // ---------------------------------------------------------------- crypto and random

  const INTEGER_ARRAYS = [Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, BigInt64Array, BigUint64Array];
  const crypto = {
    getRandomValues(array) {
      if (!INTEGER_ARRAYS.some((T) => array instanceof T))
        throw new DOMException("getRandomValues: the argument must be an integer typed array", "TypeMismatchError");
      if (array.byteLength > 65536)
        throw new DOMException(`getRandomValues: ${array.byteLength} bytes is over the 65536-byte limit`, "QuotaExceededError");
      new Uint8Array(array.buffer, array.byteOffset, array.byteLength).set(native.random(array.byteLength));
      return array;
    },
    randomUUID() {
      const b = native.random(16);
      b[6] = (b[6] & 0x0f) | 0x40;
      b[8] = (b[8] & 0x3f) | 0x80;
      const hex = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
      return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
    },
  };

  // QuickJS seeds Math.random once per context, which would make every request replay the
  // snapshot's sequence. xoshiro128** seeded from the host on first use in each request.
  let rng = null;
  const random = () => {
    if (rng === null) rng = new Uint32Array(native.random(16).buffer);
    const next = () => {
      const s = rng;
      const result = Math.imul(((Math.imul(s[1], 5) << 7) | (Math.imul(s[1], 5) >>> 25)), 9) >>> 0;
      const t = s[1] << 9;
      s[2] ^= s[0];
      s[3] ^= s[1];
      s[1] ^= s[2];
      s[0] ^= s[3];
      s[2] ^= t;
      s[3] = (s[3] << 11) | (s[3] >>> 21);
      return result;
    };
    return ((next() >>> 5) * 67108864 + (next() >>> 6)) / 9007199254740992;
  };
  Object.defineProperty(Math, "random", { value: random, writable: true, configurable: true });

  // ---------------------------------------------------------------------- base64

  const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const btoa = (input) => {
    const s = String(input);
    if (/[^\0-\xff]/.test(s)) throw new DOMException("btoa: the string has characters outside Latin-1", "InvalidCharacterError");
    let result = "";
    for (let i = 0; i < s.length; i += 3) {
      const [a, b, c] = [s.charCodeAt(i), s.charCodeAt(i + 1), s.charCodeAt(i + 2)];
      const n = (a << 16) | ((b || 0) << 8) | (c || 0);
      result += B64[n >> 18] + B64[(n >> 12) & 63] + (i + 1 < s.length ? B64[(n >> 6) & 63] : "=") + (i + 2 < s.length ? B64[n & 63] : "=");
    }
    return result;
  };
  const atob = (input) => {
    let s = String(input).replace(/[\t\n\f\r ]/g, "");
    if (s.length % 4 === 0) s = s.replace(/==?$/, "");
    if (s.length % 4 === 1 || /[^A-Za-z0-9+/]/.test(s))
      throw new DOMException("atob: the string is not correctly encoded", "InvalidCharacterError");
    let result = "";
    let bits = 0;
    let value = 0;
    for (const ch of s) {
      value = (value << 6) | B64.indexOf(ch);
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        result += String.fromCharCode((value >> bits) & 0xff);
      }
    }
    return result;
  };

  // ------------------------------------------------------------------------- Headers

  const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
  // Validated names, lower-cased: the common ones are checked once, at build time, and the
  // hot path of every request is one Map lookup.
  const NAMES = new Map();
  const headerName = (name) => {
    const known = NAMES.get(name);
    if (known !== undefined) return known;
    name = String(name);
    if (!TOKEN.test(name)) throw new TypeError(`Invalid header name: ${JSON.stringify(name)}`);
    const lower = name.toLowerCase();
    if (NAMES.size < 1024) NAMES.set(name, lower);
    return lower;
  };
  for (const name of ["accept", "accept-encoding", "accept-language", "authorization", "cache-control", "connection", "content-encoding", "content-length", "content-type", "cookie", "date", "etag", "expires", "host", "if-modified-since", "if-none-match", "last-modified", "location", "origin", "referer", "server", "set-cookie", "transfer-encoding", "user-agent", "vary", "x-forwarded-for"]) {
    headerName(name);
    headerName(name.replace(/(^|-)[a-z]/g, (c) => c.toUpperCase()));
  }
  const HTTP_WHITESPACE = /^[\t\n\r ]+|[\t\n\r ]+$/g;
  const headerValue = (value) => {
    value = String(value);
    // Only values that start or end with whitespace need the regex.
    if (value.charCodeAt(0) <= 0x20 || value.charCodeAt(value.length - 1) <= 0x20) value = value.replace(HTTP_WHITESPACE, "");
    if (value.includes("\r") || value.includes("\n") || value.includes("\0"))
      throw new TypeError(`Invalid header value: ${JSON.stringify(value)}`);
    return value;
  };

  let headerMap;
  class Headers {
    // lower-case name → values, in insertion order
    #map = new Map();
    static {
      headerMap = (headers) => headers.#map;
    }
    constructor(init) {
      if (init === undefined || init === null) return;
      if (init instanceof Headers) {
        for (const [name, values] of init.#map) this.#map.set(name, [...values]);
      } else if (typeof init === "object" && typeof init[Symbol.iterator] === "function") {
        for (const pair of init) {
          const entry = [...pair];
          if (entry.length !== 2) throw new TypeError("Headers: each header must be a [name, value] pair");
          this.append(entry[0], entry[1]);
        }
      } else if (typeof init === "object") {
        // An index loop: for-of would make an array iterator (a hot path: response headers).
        const names = Object.keys(init);
        for (let i = 0; i < names.length; i++) this.append(names[i], init[names[i]]);
      } else {
        throw new TypeError("Headers: init must be an object, an iterable of pairs or Headers");
      }
    }
    append(name, value) {
      const key = headerName(name);
      const values = this.#map.get(key);
      if (values) values.push(headerValue(value));
      else this.#map.set(key, [headerValue(value)]);
    }
    set(name, value) {
      this.#map.set(headerName(name), [headerValue(value)]);
    }
    delete(name) {
      this.#map.delete(headerName(name));
    }
    get(name) {
      const values = this.#map.get(headerName(name));
      return values ? values.join(", ") : null;
    }
    getSetCookie() {
      return [...(this.#map.get("set-cookie") ?? [])];
    }
    has(name) {
      return this.#map.has(headerName(name));
    }
    forEach(callback, thisArg) {
      for (const [name, value] of this) callback.call(thisArg, value, name, this);
    }
    *entries() {
      for (const name of [...this.#map.keys()].sort()) {
        const values = this.#map.get(name);
        if (name === "set-cookie") for (const value of values) yield [name, value];
        else yield [name, values.join(", ")];
      }
    }
    *keys() {
      for (const [name] of this.entries()) yield name;
    }
    *values() {
      for (const [, value] of this.entries()) yield value;
    }
    [Symbol.iterator]() {
      return this.entries();
    }
    get [Symbol.toStringTag]() {
      return "Headers";
    }
  }

  /** `[name, value, name, value, …]` for the engine. */
  const flatHeaders = (headers) => {
    const flat = [];
    // forEach and an index loop: no iterator objects or destructuring (a hot path).
    headerMap(headers).forEach((values, name) => {
      for (let i = 0; i < values.length; i++) flat.push(name, values[i]);
    });
    return flat;
  };
  const headersFromFlat = (flat) => {
    const headers = new Headers();
    const map = headerMap(headers);
    for (let i = 0; i < flat.length; i += 2) {
      const values = map.get(flat[i]);
      if (values) values.push(flat[i + 1]);
      else map.set(flat[i], [flat[i + 1]]);
    }
    return headers;
  };

  // ------------------------------------------------------------------ URLSearchParams

  const percentDecode = (text) => {
    if (!text.includes("%")) return text;
    const bytes = [];
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c === 0x25 && /^[0-9A-Fa-f]{2}$/.test(text.slice(i + 1, i + 3))) {
        bytes.push(parseInt(text.slice(i + 1, i + 3), 16));
        i += 2;
      } else if (c < 0x80) {
        bytes.push(c);
      } else {
        const ch = String.fromCodePoint(text.codePointAt(i));
        bytes.push(...native.encode(ch));
        i += ch.length - 1;
      }
    }
    return native.decode(new Uint8Array(bytes));
  };
  const formDecode = (text) => percentDecode(text.replace(/\+/g, " "));
  const formEncode = (text) =>
    encodeURIComponent(String(text).toWellFormed())
      .replace(/[!'()~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
      .replace(/%20/g, "+");

  let paramsAttach;
  let paramsReplace;
  class URLSearchParams {
    #list = [];
    #url = null;
    static {
      paramsAttach = (params, url) => {
        params.#url = url;
      };
      paramsReplace = (params, query) => {
        params.#list = URLSearchParams.#parse(query);
      };
    }
    static #parse(query) {
      const list = [];
      for (const part of query.split("&")) {
        if (part === "") continue;
        const eq = part.indexOf("=");
        const name = eq === -1 ? part : part.slice(0, eq);
        const value = eq === -1 ? "" : part.slice(eq + 1);
        list.push([formDecode(name), formDecode(value)]);
      }
      return list;
    }
    constructor(init = "") {
      if (init instanceof URLSearchParams) {
        this.#list = init.#list.map(([n, v]) => [n, v]);
      } else if (typeof init === "object" && init !== null && typeof init[Symbol.iterator] === "function") {
        for (const pair of init) {
          const entry = [...pair];
          if (entry.length !== 2) throw new TypeError("URLSearchParams: each pair must have two elements");
          this.#list.push([String(entry[0]), String(entry[1])]);
        }
      } else if (typeof init === "object" && init !== null) {
        for (const name of Object.keys(init)) this.#list.push([name, String(init[name])]);
      } else {
        const text = String(init);
        this.#list = URLSearchParams.#parse(text.startsWith("?") ? text.slice(1) : text);
      }
    }
    #update() {
      if (this.#url) urlSetQuery(this.#url, this.toString());
    }
    get size() {
      return this.#list.length;
    }
    append(name, value) {
      this.#list.push([String(name), String(value)]);
      this.#update();
    }
    delete(name, value) {
      name = String(name);
      this.#list = this.#list.filter(([n, v]) => n !== name || (value !== undefined && v !== String(value)));
      this.#update();
    }
    get(name) {
      const found = this.#list.find(([n]) => n === String(name));
      return found ? found[1] : null;
    }
    getAll(name) {
      return this.#list.filter(([n]) => n === String(name)).map(([, v]) => v);
    }
    has(name, value) {
      return this.#list.some(([n, v]) => n === String(name) && (value === undefined || v === String(value)));
    }
    set(name, value) {
      name = String(name);
      const at = this.#list.findIndex(([n]) => n === name);
      if (at === -1) this.#list.push([name, String(value)]);
      else {
        this.#list[at][1] = String(value);
        this.#list = this.#list.filter(([n], i) => n !== name || i === at);
      }
      this.#update();
    }
    sort() {
      this.#list.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      this.#update();
    }
    forEach(callback, thisArg) {
      for (const [name, value] of this.#list) callback.call(thisArg, value, name, this);
    }
    *entries() {
      for (const [name, value] of this.#list) yield [name, value];
    }
    *keys() {
      for (const [name] of this.#list) yield name;
    }
    *values() {
      for (const [, value] of this.#list) yield value;
    }
    [Symbol.iterator]() {
      return this.entries();
    }
    toString() {
      return this.#list.map(([n, v]) => `${formEncode(n)}=${formEncode(v)}`).join("&");
    }
    get [Symbol.toStringTag]() {
      return "URLSearchParams";
    }
  }

  // ---------------------------------------------------------------------------- URL

  const SPECIAL = { "http:": "80", "https:": "443", "ws:": "80", "wss:": "443", "ftp:": "21", "file:": "" };
  const encodeSet = (pattern) => (text) =>
    text.replace(pattern, (c) => Array.from(native.encode(c), (b) => `%${b.toString(16).toUpperCase().padStart(2, "0")}`).join(""));
  const encodePath = encodeSet(/[\0-\x20"#<>?`{}\x7f]|[^\0-\x7f]+/gu);
  const encodeOpaque = encodeSet(/[\0-\x1f\x7f]|[^\0-\x7f]+/gu);
  const encodeQuery = encodeSet(/[\0-\x20"#<>\x7f]|[^\0-\x7f]+/gu);
  const encodeSpecialQuery = encodeSet(/[\0-\x20"#'<>\x7f]|[^\0-\x7f]+/gu);
  const encodeFragment = encodeSet(/[\0-\x20"<>`\x7f]|[^\0-\x7f]+/gu);
  const encodeUserinfo = encodeSet(/[\0-\x20"#<>?`{}/:;=@[\\\]^|\x7f]|[^\0-\x7f]+/gu);

  const removeDotSegments = (path) => {
    const output = [];
    const segments = path.split("/").slice(1);
    segments.forEach((segment, i) => {
      const last = i === segments.length - 1;
      const s = segment.toLowerCase();
      if (s === ".." || s === ".%2e" || s === "%2e." || s === "%2e%2e") {
        if (output.length) output.pop();
        if (last) output.push("");
      } else if (s === "." || s === "%2e") {
        if (last) output.push("");
      } else {
        output.push(segment);
      }
    });
    return `/${output.join("/")}`;
  };

  const parseHost = (host, special) => {
    if (host.startsWith("[")) {
      if (!/^\[[0-9A-Fa-f:.]+\]$/.test(host)) throw new TypeError(`Invalid URL: bad IPv6 host ${host}`);
      return host.toLowerCase();
    }
    const decoded = percentDecode(host);
    if (special && decoded === "") throw new TypeError("Invalid URL: empty host");
    if (/[\0\t\n\r #/:<>?@[\\\]^|%]/.test(decoded)) throw new TypeError(`Invalid URL: forbidden character in host ${JSON.stringify(host)}`);
    return special ? decoded.toLowerCase() : host;
  };

  let urlSetQuery;
  const FAST_URL = /^(https?):\/\/([a-z0-9][a-z0-9\-.]*)(?::([0-9]+))?(\/[\w\-.~!$&'()*+,;=:@/%]*)?(\?[\w\-.~!$&()*+,;=:@/%?]*)?$/;
  const DOT_SEGMENT = /\/\.|%2e/i;
  class URL {
    #protocol = "";
    #username = "";
    #password = "";
    #hostname = "";
    #port = "";
    #hasAuthority = false;
    #pathname = "";
    #search = "";
    #hash = "";
    #params = null;
    static {
      urlSetQuery = (url, query) => {
        url.#search = query === "" ? "" : `?${query}`;
      };
    }

    constructor(url, base) {
      url = String(url);
      if (base === undefined && this.#fast(url)) return;
      this.#parse(url, base === undefined ? undefined : base instanceof URL ? base : new URL(base));
    }

    // The common case, `new URL(request.url)`: an absolute http(s) URL with a lower-case
    // host and nothing to normalize. One regex instead of the general parser.
    #fast(url) {
      const m = FAST_URL.exec(url);
      if (m === null || (m[4] !== undefined && DOT_SEGMENT.test(m[4]))) return false;
      const port = m[3] ?? "";
      if (port !== "" && (port.length > 5 || Number(port) > 65535)) return false;
      this.#protocol = `${m[1]}:`;
      this.#hostname = m[2];
      this.#port = port === "" || port === SPECIAL[this.#protocol] ? "" : String(Number(port));
      this.#hasAuthority = true;
      this.#pathname = m[4] ?? "/";
      this.#search = m[5] ?? "";
      return true;
    }

    static canParse(url, base) {
      try {
        new URL(url, base);
        return true;
      } catch {
        return false;
      }
    }
    static parse(url, base) {
      try {
        return new URL(url, base);
      } catch {
        return null;
      }
    }

    #parse(input, base) {
      input = input.replace(/^[\0-\x20]+|[\0-\x20]+$/g, "").replace(/[\t\n\r]/g, "");
      const scheme = /^([A-Za-z][A-Za-z0-9+\-.]*):/.exec(input);
      let rest;
      if (scheme && !(base && SPECIAL[`${scheme[1].toLowerCase()}:`] !== undefined && `${scheme[1].toLowerCase()}:` === base.#protocol && !/^[/\\]/.test(input.slice(scheme[0].length)))) {
        this.#protocol = `${scheme[1].toLowerCase()}:`;
        rest = input.slice(scheme[0].length);
        const special = this.#special;
        if (special ? true : rest.startsWith("//")) {
          rest = rest.replace(special ? /^[/\\]*/ : /^\/\//, "");
          rest = this.#authority(rest, special);
        } else if (!rest.startsWith("/")) {
          return this.#opaque(rest);
        }
      } else {
        if (!base) throw new TypeError(`Invalid URL: ${JSON.stringify(input)} is relative and there is no base`);
        if (scheme) input = input.slice(scheme[0].length);
        this.#protocol = base.#protocol;
        const special = this.#special;
        const slashes = special ? /^[/\\]{2}/ : /^\/\//;
        if (slashes.test(input)) {
          rest = this.#authority(input.replace(special ? /^[/\\]*/ : /^\/\//, ""), special);
        } else {
          if (!base.#hasAuthority && !base.#pathname.startsWith("/")) {
            if (!input.startsWith("#")) throw new TypeError(`Invalid URL: cannot resolve ${JSON.stringify(input)} against ${base.href}`);
            this.#pathname = base.#pathname;
            this.#search = base.#search;
            this.#hash = input === "#" ? "" : encodeFragment(input);
            return;
          }
          this.#username = base.#username;
          this.#password = base.#password;
          this.#hostname = base.#hostname;
          this.#port = base.#port;
          this.#hasAuthority = base.#hasAuthority;
          if (input === "" || input.startsWith("#") || input.startsWith("?")) {
            this.#pathname = base.#pathname;
            this.#search = input.startsWith("?") ? "" : base.#search;
            rest = input;
          } else if (/^[/\\]/.test(input) && (special || input.startsWith("/"))) {
            rest = input;
          } else {
            const dir = base.#pathname.slice(0, base.#pathname.lastIndexOf("/") + 1);
            rest = dir + input;
          }
        }
      }
      this.#tail(rest);
    }

    get #special() {
      return SPECIAL[this.#protocol] !== undefined;
    }

    #authority(rest, special) {
      const end = rest.search(special ? /[/\\?#]/ : /[/?#]/);
      const authority = end === -1 ? rest : rest.slice(0, end);
      rest = end === -1 ? "" : rest.slice(end);
      const at = authority.lastIndexOf("@");
      if (at !== -1) {
        const userinfo = authority.slice(0, at);
        const colon = userinfo.indexOf(":");
        this.#username = encodeUserinfo(colon === -1 ? userinfo : userinfo.slice(0, colon));
        this.#password = colon === -1 ? "" : encodeUserinfo(userinfo.slice(colon + 1));
      }
      const hostport = authority.slice(at + 1);
      const portAt = hostport.startsWith("[") ? hostport.indexOf("]:") + 1 : hostport.lastIndexOf(":");
      const host = portAt > 0 ? hostport.slice(0, portAt) : hostport;
      const port = portAt > 0 ? hostport.slice(portAt + 1) : "";
      this.#hostname = this.#protocol === "file:" && host === "localhost" ? "" : parseHost(host, special && this.#protocol !== "file:");
      this.#setPort(port);
      this.#hasAuthority = true;
      if (special && rest === "") rest = "/";
      return rest;
    }

    #setPort(port) {
      if (port === "") {
        this.#port = "";
        return;
      }
      if (!/^[0-9]+$/.test(port) || Number(port) > 65535) throw new TypeError(`Invalid URL: bad port ${JSON.stringify(port)}`);
      const normalized = String(Number(port));
      this.#port = SPECIAL[this.#protocol] === normalized ? "" : normalized;
    }

    #tail(rest) {
      const hashAt = rest.indexOf("#");
      if (hashAt !== -1) {
        const fragment = rest.slice(hashAt + 1);
        this.#hash = `#${encodeFragment(fragment)}`;
        rest = rest.slice(0, hashAt);
      } else {
        this.#hash = "";
      }
      const queryAt = rest.indexOf("?");
      if (queryAt !== -1) {
        const query = rest.slice(queryAt + 1);
        this.#search = `?${(this.#special ? encodeSpecialQuery : encodeQuery)(query)}`;
        rest = rest.slice(0, queryAt);
      } else if (rest !== "" || this.#search === "") {
        this.#search = rest === "" ? this.#search : "";
      }
      if (rest !== "" || this.#pathname === "") this.#setPath(rest);
    }

    #setPath(path) {
      if (this.#special) path = path.replace(/\\/g, "/");
      if (path === "" && this.#special) path = "/";
      if (path !== "" && !path.startsWith("/") && this.#hasAuthority) path = `/${path}`;
      this.#pathname = path.startsWith("/") ? removeDotSegments(encodePath(path)) : encodePath(path);
    }

    #opaque(rest) {
      this.#hasAuthority = false;
      const hashAt = rest.indexOf("#");
      this.#hash = hashAt === -1 || hashAt === rest.length - 1 ? "" : `#${encodeFragment(rest.slice(hashAt + 1))}`;
      if (hashAt !== -1) rest = rest.slice(0, hashAt);
      const queryAt = rest.indexOf("?");
      this.#search = queryAt === -1 || queryAt === rest.length - 1 ? "" : `?${encodeQuery(rest.slice(queryAt + 1))}`;
      if (queryAt !== -1) rest = rest.slice(0, queryAt);
      this.#pathname = encodeOpaque(rest);
    }

    get href() {
      const auth = this.#hasAuthority
        ? `//${this.#username || this.#password ? `${this.#username}${this.#password ? `:${this.#password}` : ""}@` : ""}${this.host}`
        : "";
      return `${this.#protocol}${auth}${this.#pathname}${this.#search}${this.#hash}`;
    }
    set href(value) {
      const parsed = new URL(value);
      this.#protocol = parsed.#protocol;
      this.#username = parsed.#username;
      this.#password = parsed.#password;
      this.#hostname = parsed.#hostname;
      this.#port = parsed.#port;
      this.#hasAuthority = parsed.#hasAuthority;
      this.#pathname = parsed.#pathname;
      this.#search = parsed.#search;
      this.#hash = parsed.#hash;
      if (this.#params) paramsReplace(this.#params, this.#search.slice(1));
    }
    get origin() {
      return this.#special && this.#protocol !== "file:" ? `${this.#protocol}//${this.host}` : "null";
    }
    get protocol() {
      return this.#protocol;
    }
    set protocol(value) {
      const scheme = /^([A-Za-z][A-Za-z0-9+\-.]*)/.exec(String(value));
      if (!scheme) return;
      const protocol = `${scheme[1].toLowerCase()}:`;
      if ((SPECIAL[protocol] !== undefined) !== this.#special) return;
      this.#protocol = protocol;
      if (SPECIAL[protocol] === this.#port) this.#port = "";
    }
    get username() {
      return this.#username;
    }
    set username(value) {
      if (this.#hasAuthority && this.#hostname) this.#username = encodeUserinfo(String(value));
    }
    get password() {
      return this.#password;
    }
    set password(value) {
      if (this.#hasAuthority && this.#hostname) this.#password = encodeUserinfo(String(value));
    }
    get host() {
      return this.#port ? `${this.#hostname}:${this.#port}` : this.#hostname;
    }
    set host(value) {
      if (!this.#hasAuthority) return;
      const hostport = String(value);
      const portAt = hostport.startsWith("[") ? hostport.indexOf("]:") + 1 : hostport.lastIndexOf(":");
      this.hostname = portAt > 0 ? hostport.slice(0, portAt) : hostport;
      if (portAt > 0) this.port = hostport.slice(portAt + 1);
    }
    get hostname() {
      return this.#hostname;
    }
    set hostname(value) {
      if (!this.#hasAuthority) return;
      try {
        this.#hostname = parseHost(String(value), this.#special);
      } catch {
        // As in browsers, an invalid host leaves the URL unchanged.
      }
    }
    get port() {
      return this.#port;
    }
    set port(value) {
      if (!this.#hasAuthority || this.#protocol === "file:") return;
      const digits = /^[0-9]*/.exec(String(value))[0];
      try {
        this.#setPort(digits);
      } catch {
        // Out of range: unchanged.
      }
    }
    get pathname() {
      return this.#pathname;
    }
    set pathname(value) {
      if (!this.#hasAuthority && !this.#pathname.startsWith("/")) return;
      this.#setPath(String(value));
    }
    get search() {
      return this.#search.length > 1 ? this.#search : "";
    }
    set search(value) {
      let query = String(value);
      if (query.startsWith("?")) query = query.slice(1);
      this.#search = query === "" ? "" : `?${(this.#special ? encodeSpecialQuery : encodeQuery)(query)}`;
      if (this.#params) paramsReplace(this.#params, this.#search.slice(1));
    }
    get searchParams() {
      if (!this.#params) {
        this.#params = new URLSearchParams(this.#search.slice(1));
        paramsAttach(this.#params, this);
      }
      return this.#params;
    }
    get hash() {
      return this.#hash.length > 1 ? this.#hash : "";
    }
    set hash(value) {
      let fragment = String(value);
      if (fragment.startsWith("#")) fragment = fragment.slice(1);
      this.#hash = fragment === "" ? "" : `#${encodeFragment(fragment)}`;
    }
    toString() {
      return this.href;
    }
    toJSON() {
      return this.href;
    }
    get [Symbol.toStringTag]() {
      return "URL";
    }
  }

  // ------------------------------------------------------------------ ReadableStream

  let streamDisturbed;
  class ReadableStream {
    #queue = [];
    #state = "readable";
    #error = undefined;
    #readers = [];
    #source;
    #controller;
    #started = false;
    #pulling = false;
    #pullAgain = false;
    #highWaterMark;
    #locked = false;
    #disturbed = false;
    static {
      streamDisturbed = (stream) => stream.#disturbed;
    }

    constructor(source = {}, strategy = {}) {
      if (source.type === "bytes") source = { ...source, type: undefined };
      this.#source = source;
      this.#highWaterMark = strategy.highWaterMark ?? 1;
      const stream = this;
      this.#controller = {
        enqueue(chunk) {
          if (stream.#state !== "readable") throw new TypeError("ReadableStream: enqueue after close");
          const reader = stream.#readers.shift();
          if (reader) reader.resolve({ value: chunk, done: false });
          else stream.#queue.push(chunk);
        },
        close() {
          if (stream.#state !== "readable") throw new TypeError("ReadableStream: already closed");
          stream.#state = "closing";
          stream.#settleIfDrained();
        },
        error(e) {
          stream.#fail(e);
        },
        get desiredSize() {
          return stream.#highWaterMark - stream.#queue.length;
        },
      };
      Promise.resolve()
        .then(() => source.start?.(this.#controller))
        .then(
          () => {
            this.#started = true;
            this.#pullIfNeeded();
          },
          (e) => this.#fail(e),
        );
    }

    static from(iterable) {
      const iterator = iterable[Symbol.asyncIterator] ? iterable[Symbol.asyncIterator]() : iterable[Symbol.iterator]();
      return new ReadableStream({
        async pull(controller) {
          const { value, done } = await iterator.next();
          if (done) controller.close();
          else controller.enqueue(value);
        },
        async cancel(reason) {
          await iterator.return?.(reason);
        },
      });
    }

    #settleIfDrained() {
      if (this.#state === "closing" && this.#queue.length === 0) {
        this.#state = "closed";
        for (const reader of this.#readers.splice(0)) reader.resolve({ value: undefined, done: true });
      }
    }

    #fail(e) {
      if (this.#state === "closed" || this.#state === "errored") return;
      this.#state = "errored";
      this.#error = e;
      this.#queue = [];
      for (const reader of this.#readers.splice(0)) reader.reject(e);
    }

    #pullIfNeeded() {
      if (!this.#started || this.#state !== "readable" || typeof this.#source.pull !== "function") return;
      if (this.#queue.length >= this.#highWaterMark && this.#readers.length === 0) return;
      if (this.#pulling) {
        this.#pullAgain = true;
        return;
      }
      this.#pulling = true;
      Promise.resolve()
        .then(() => this.#source.pull(this.#controller))
        .then(
          () => {
            this.#pulling = false;
            if (this.#pullAgain) {
              this.#pullAgain = false;
              this.#pullIfNeeded();
            }
          },
          (e) => this.#fail(e),
        );
    }

    #read() {
      this.#disturbed = true;
      if (this.#queue.length > 0) {
        const value = this.#queue.shift();
        this.#settleIfDrained();
        this.#pullIfNeeded();
        return Promise.resolve({ value, done: false });
      }
      if (this.#state === "closed" || this.#state === "closing") return Promise.resolve({ value: undefined, done: true });
      if (this.#state === "errored") return Promise.reject(this.#error);
      return new Promise((resolve, reject) => {
        this.#readers.push({ resolve, reject });
        this.#pullIfNeeded();
      });
    }

    get locked() {
      return this.#locked;
    }

    cancel(reason) {
      if (this.#locked) return Promise.reject(new TypeError("ReadableStream: cannot cancel a locked stream"));
      return this.#cancel(reason);
    }

    #cancel(reason) {
      this.#disturbed = true;
      if (this.#state === "closed" || this.#state === "errored") return Promise.resolve();
      this.#queue = [];
      this.#state = "closing";
      this.#settleIfDrained();
      return Promise.resolve(this.#source.cancel?.(reason)).then(() => undefined);
    }

    getReader(options = {}) {
      if (options.mode === "byob") throw new TypeError("ReadableStream: BYOB readers are not supported");
      if (this.#locked) throw new TypeError("ReadableStream: already locked to a reader");
      this.#locked = true;
      const stream = this;
      let released = false;
      const check = () => {
        if (released) throw new TypeError("ReadableStreamDefaultReader: the lock was released");
      };
      return {
        read() {
          if (released) return Promise.reject(new TypeError("ReadableStreamDefaultReader: the lock was released"));
          return stream.#read();
        },
        releaseLock() {
          if (!released) {
            released = true;
            stream.#locked = false;
          }
        },
        cancel(reason) {
          check();
          return stream.#cancel(reason);
        },
        get closed() {
          return new Promise((resolve, reject) => {
            const poll = () => {
              if (stream.#state === "closed") resolve();
              else if (stream.#state === "errored") reject(stream.#error);
              else setTimeout(poll, 0);
            };
            poll();
          });
        },
      };
    }

    async *values({ preventCancel = false } = {}) {
      const reader = this.getReader();
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          yield value;
        }
      } finally {
        if (!preventCancel) reader.cancel().catch(() => {});
        reader.releaseLock();
      }
    }

    [Symbol.asyncIterator](options) {
      return this.values(options);
    }

    tee() {
      const chunks = [[], []];
      const reader = this.getReader();
      const branch = (i) =>
        new ReadableStream({
          async pull(controller) {
            if (chunks[i].length === 0) {
              const { value, done } = await reader.read();
              if (done) {
                chunks[i].push(null);
                chunks[1 - i].push(null);
              } else {
                chunks[i].push(value);
                chunks[1 - i].push(value);
              }
            }
            const chunk = chunks[i].shift();
            if (chunk === null) controller.close();
            else controller.enqueue(chunk);
          },
        });
      return [branch(0), branch(1)];
    }

    get [Symbol.toStringTag]() {
      return "ReadableStream";
    }
  }

  /** A stream of the incoming request body, read from the host as it is pulled. */
  const requestBodyStream = () =>
    new ReadableStream({
      pull(controller) {
        const chunk = native.read();
        if (chunk === undefined) controller.close();
        else controller.enqueue(chunk);
      },
    });

  // ------------------------------------------------------------------------- bodies

  // A body is null, bytes (Uint8Array), a ReadableStream, or INCOMING (the request body,
  // still with the host).
  const INCOMING = Symbol("incoming");
  // What an absent RequestInit or ResponseInit reads as (frozen: nothing may change it).
  const NO_INIT = Object.freeze({});

  // The content type the last extractBody call found (null: none); read right after it, so
  // a body costs no [bytes, type] array.
  let extractedType = null;
  const TEXT = "text/plain;charset=UTF-8";
  const extractBody = (init) => {
    extractedType = null;
    if (init === null || init === undefined) return null;
    if (typeof init === "string") {
      extractedType = TEXT;
      return native.encode(init);
    }
    if (init instanceof URLSearchParams) {
      extractedType = "application/x-www-form-urlencoded;charset=UTF-8";
      return native.encode(init.toString());
    }
    if (init instanceof ReadableStream) return init;
    const bytes = asBytes(init);
    if (bytes) return bytes.slice();
    extractedType = TEXT;
    return native.encode(String(init));
  };

  const readAll = async (body) => {
    if (body === null) return new Uint8Array(0);
    if (body instanceof Uint8Array) return body;
    const chunks = [];
    let total = 0;
    if (body === INCOMING) {
      for (let chunk = native.read(); chunk !== undefined; chunk = native.read()) {
        chunks.push(chunk);
        total += chunk.length;
      }
    } else {
      for await (const chunk of body) {
        const bytes = asBytes(chunk);
        if (!bytes) throw new TypeError("ReadableStream: body chunks must be Uint8Array");
        chunks.push(bytes);
        total += bytes.length;
      }
    }
    return chunks.length === 0 ? new Uint8Array(0) : concat(chunks, total);
  };

  // Shared by Request and Response: the body, read once.
  class Body {
    #body = null;
    #used = false;
    #stream = null;
    static take(message) {
      if (message.#used || (message.#stream && message.#stream.locked)) throw new TypeError("Body has already been used");
      message.#used = true;
      const body = message.#stream ?? message.#body;
      message.#body = null;
      return body;
    }
    static peek(message) {
      return message.#stream ?? message.#body;
    }
    static init(message, body) {
      message.#body = body;
    }
    get body() {
      if (this.#stream) return this.#stream;
      if (this.#body === null) return null;
      if (this.#body instanceof ReadableStream) this.#stream = this.#body;
      else if (this.#body === INCOMING) this.#stream = requestBodyStream();
      else {
        const bytes = this.#body;
        this.#stream = new ReadableStream({
          start(controller) {
            controller.enqueue(bytes);
            controller.close();
          },
        });
      }
      this.#body = null;
      return this.#stream;
    }
    get bodyUsed() {
      return this.#used || (this.#stream !== null && streamDisturbed(this.#stream));
    }
    async bytes() {
      return readAll(Body.take(this));
    }
    async arrayBuffer() {
      const bytes = await readAll(Body.take(this));
      return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes.buffer : bytes.slice().buffer;
    }
    async text() {
      return native.decode(await readAll(Body.take(this)));
    }
    async json() {
      return JSON.parse(await this.text());
    }
    async formData() {
      throw new TypeError("formData() is not supported by edge; parse with URLSearchParams or text()");
    }
    async blob() {
      throw new TypeError("blob() is not supported by edge; use arrayBuffer() or bytes()");
    }
  }

  const cloneBody = (message) => {
    const body = Body.peek(message);
    if (body instanceof ReadableStream || body === INCOMING) {
      const stream = message.body;
      const [a, b] = stream.tee();
      Body.init(message, a);
      return b;
    }
    return body;
  };

  // ------------------------------------------------------------------------- Request

  const METHODS = new Set(["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH"]);
  const normalizeMethod = (method) => {
    method = String(method);
    if (!TOKEN.test(method)) throw new TypeError(`Invalid method: ${JSON.stringify(method)}`);
    const upper = method.toUpperCase();
    if (upper === "CONNECT" || upper === "TRACE" || upper === "TRACK") throw new TypeError(`Forbidden method: ${method}`);
    return METHODS.has(upper) ? upper : method;
  };

  let makeIncoming;
  // The request being served, while `makeIncoming` constructs its Request.
  let incomingMethod = null;
  let incomingUrl = null;
  let incomingFlat = null;
  class Request extends Body {
    #method = "GET";
    #url;
    #headers = null;
    // The served request's headers stay flat until asked for; its URL and headers are
    // fetched from the host on first use (`null` here: a handler that never looks at
    // them costs no host calls).
    #flat = null;
    #redirect = "follow";
    #signal = null;
    static {
      makeIncoming = (method, url, headers) => {
        incomingMethod = method;
        incomingUrl = url;
        incomingFlat = headers;
        try {
          return new Request(INCOMING);
        } finally {
          incomingMethod = incomingUrl = incomingFlat = null;
        }
      };
    }
    constructor(input, init) {
      super();
      if (input === INCOMING && incomingMethod !== null) {
        // The request being served: its body stays with the host until read.
        this.#method = incomingMethod;
        this.#url = incomingUrl;
        this.#flat = incomingFlat;
        Body.init(this, incomingMethod === "GET" || incomingMethod === "HEAD" ? null : INCOMING);
        return;
      }
      // An absent init is an empty one (WebIDL: undefined and null alike).
      if (init === undefined || init === null) init = NO_INIT;
      let body = null;
      if (input instanceof Request) {
        this.#method = input.#method;
        this.#url = input.url;
        this.#headers = new Headers(input.headers);
        this.#redirect = input.#redirect;
        if (init.body === undefined && Body.peek(input) !== null) body = Body.take(input);
      } else {
        this.#url = new URL(String(input)).href;
        this.#headers = new Headers();
      }
      if (init.method !== undefined) this.#method = normalizeMethod(init.method);
      if (init.headers !== undefined) this.#headers = new Headers(init.headers);
      if (init.redirect !== undefined) this.#redirect = String(init.redirect);
      if (init.signal !== undefined) this.#signal = init.signal;
      if (init.body !== undefined && init.body !== null) {
        const bytes = extractBody(init.body);
        const type = extractedType;
        body = bytes;
        if (type && !this.#headers.has("content-type")) this.#headers.set("content-type", type);
      }
      if (body !== null && (this.#method === "GET" || this.#method === "HEAD"))
        throw new TypeError(`Request with ${this.#method} method cannot have a body`);
      Body.init(this, body);
    }
    get method() {
      return this.#method;
    }
    get url() {
      return (this.#url ??= native.url());
    }
    get headers() {
      if (this.#headers === null) {
        this.#headers = headersFromFlat(this.#flat ?? native.headers());
        this.#flat = null;
      }
      return this.#headers;
    }
    get redirect() {
      return this.#redirect;
    }
    get signal() {
      return this.#signal;
    }
    clone() {
      if (this.bodyUsed) throw new TypeError("Request.clone: the body has already been used");
      return new Request(this, { body: cloneBody(this) ?? undefined, headers: this.headers });
    }
    get [Symbol.toStringTag]() {
      return "Request";
    }
  }

  // ------------------------------------------------------------------------ Response

  const NULL_BODY = new Set([101, 103, 204, 205, 304]);
  const REDIRECTS = new Set([301, 302, 303, 307, 308]);

  let responseMeta;
  class Response extends Body {
    #status = 200;
    #statusText = "";
    #headers;
    #url = "";
    #redirected = false;
    #type = "default";
    static {
      responseMeta = (response, url, redirected) => {
        response.#url = url;
        response.#redirected = redirected;
        response.#type = "basic";
      };
    }
    constructor(body = null, init) {
      super();
      if (init === undefined || init === null) init = NO_INIT;
      const status = init.status === undefined ? 200 : Number(init.status);
      if (!Number.isInteger(status) || status < 200 || status > 599)
        throw new RangeError(`Response: status ${init.status} is not in the range 200 to 599`);
      this.#status = status;
      this.#statusText = init.statusText === undefined ? "" : String(init.statusText);
      this.#headers = new Headers(init.headers);
      const bytes = extractBody(body);
      const type = extractedType;
      if (bytes !== null && NULL_BODY.has(status)) throw new TypeError(`Response with status ${status} cannot have a body`);
      if (type && !this.#headers.has("content-type")) this.#headers.set("content-type", type);
      Body.init(this, bytes);
    }
    static json(data, init = {}) {
      const text = JSON.stringify(data);
      if (text === undefined) throw new TypeError("Response.json: the value cannot be serialized to JSON");
      const headers = new Headers(init.headers);
      if (!headers.has("content-type")) headers.set("content-type", "application/json");
      return new Response(text, { ...init, headers });
    }
    static redirect(url, status = 302) {
      if (!REDIRECTS.has(status)) throw new RangeError(`Response.redirect: ${status} is not a redirect status`);
      return new Response(null, { status, headers: { location: new URL(String(url)).href } });
    }
    static error() {
      const response = new Response(null, { status: 200 });
      response.#status = 0;
      response.#type = "error";
      return response;
    }
    get status() {
      return this.#status;
    }
    get statusText() {
      return this.#statusText;
    }
    get ok() {
      return this.#status >= 200 && this.#status <= 299;
    }
    get headers() {
      return this.#headers;
    }
    get url() {
      return this.#url;
    }
    get redirected() {
      return this.#redirected;
    }
    get type() {
      return this.#type;
    }
    clone() {
      if (this.bodyUsed) throw new TypeError("Response.clone: the body has already been used");
      const copy = new Response(null, { status: this.#status === 0 ? 200 : this.#status, statusText: this.#statusText, headers: this.#headers });
      copy.#status = this.#status;
      copy.#url = this.#url;
      copy.#redirected = this.#redirected;
      copy.#type = this.#type;
      Body.init(copy, cloneBody(this));
      return copy;
    }
    get [Symbol.toStringTag]() {
      return "Response";
    }
  }

  // --------------------------------------------------------------------------- fetch

  const fetch = async (input, init = {}) => {
    let request = new Request(input, init);
    let redirected = false;
    for (let hops = 0; ; hops++) {
      const url = new URL(request.url);
      if (url.protocol !== "http:" && url.protocol !== "https:")
        throw new TypeError(`fetch failed: unsupported scheme ${url.protocol}`);
      const body = Body.peek(request) === null ? undefined : await readAll(Body.take(request));
      const args = [request.method, url.protocol.slice(0, -1), url.host, url.pathname + url.search, flatHeaders(request.headers)];
      if (body !== undefined) args.push(body);
      const reply = native.fetch(...args);
      const headers = headersFromFlat(reply.headers);
      const location = headers.get("location");
      if (REDIRECTS.has(reply.status) && location !== null && request.redirect !== "manual") {
        if (request.redirect === "error") throw new TypeError(`fetch failed: redirected to ${location} with redirect: "error"`);
        if (hops >= 20) throw new TypeError("fetch failed: too many redirects");
        const next = new URL(location, url).href;
        const keepBody = reply.status === 307 || reply.status === 308;
        const method = reply.status === 303 && request.method !== "HEAD" ? "GET" : request.method;
        request = new Request(next, {
          method: keepBody || method === "HEAD" ? method : method === "POST" ? "GET" : method,
          headers: request.headers,
          body: keepBody ? body : undefined,
          redirect: request.redirect,
        });
        redirected = true;
        continue;
      }
      const response = new Response(NULL_BODY.has(reply.status) || reply.status < 200 ? null : reply.body, {
        status: reply.status < 200 ? 200 : reply.status,
        headers,
      });
      responseMeta(response, url.href, redirected);
      return response;
    }
  };

  // ----------------------------------------------------------------- fetch events

  let app = null;
  // ------------------------------------------------------------------- env: state

  /** A key-value store the app's manifest declares (`key_value_stores`), Cloudflare
   * Workers KV's shape on `wasi:keyvalue`. Values are bytes; `get` decodes them as asked. */
  class KVNamespace {
    #name;
    constructor(name) {
      this.#name = name;
    }
    async get(key, options) {
      const type = typeof options === "string" ? options : (options?.type ?? "text");
      if (!["text", "json", "arrayBuffer", "stream"].includes(type))
        throw new TypeError(`KV get: unknown type "${type}" (use "text", "json", "arrayBuffer" or "stream")`);
      const bytes = native.kvGet(this.#name, String(key));
      if (bytes === undefined || bytes === null) return null;
      if (type === "text") return native.decode(bytes);
      if (type === "json") return JSON.parse(native.decode(bytes));
      if (type === "arrayBuffer") return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
      return new ReadableStream({ start(c) { c.enqueue(bytes); c.close(); } });
    }
    async put(key, value, options) {
      if (options && (options.expiration !== undefined || options.expirationTtl !== undefined))
        throw new TypeError("KV put: expiration is not supported by edge's stores");
      if (options?.metadata !== undefined) throw new TypeError("KV put: metadata is not supported by edge's stores");
      let bytes = typeof value === "string" ? native.encode(value) : asBytes(value);
      if (bytes === null && value instanceof ReadableStream) bytes = new Uint8Array(await new Response(value).arrayBuffer());
      if (bytes === null) throw new TypeError("KV put: the value must be a string, an ArrayBuffer, a typed array or a ReadableStream");
      native.kvSet(this.#name, String(key), bytes);
    }
    async delete(key) {
      native.kvDelete(this.#name, String(key));
    }
    /** Keys in UTF-16 order, filtered by `prefix`, `limit` (≤ 1000) at a time. Reads every
     * key of the store: the host's pages are in insertion order. */
    async list(options = {}) {
      const prefix = options.prefix == null ? "" : String(options.prefix);
      const limit = options.limit === undefined ? 1000 : Number(options.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new RangeError("KV list: limit must be an integer from 1 to 1000");
      const after = options.cursor ? native.decode(Uint8Array.from(atob(String(options.cursor)), (c) => c.charCodeAt(0))) : null;
      const all = [];
      let cursor = -1;
      do {
        const page = native.kvList(this.#name, cursor);
        cursor = page[0];
        for (let i = 1; i < page.length; i++) if (page[i].startsWith(prefix) && (after === null || page[i] > after)) all.push(page[i]);
      } while (cursor >= 0);
      all.sort();
      const keys = all.slice(0, limit).map((name) => ({ name }));
      if (all.length <= limit) return { keys, list_complete: true, cacheStatus: null };
      const last = native.encode(keys[keys.length - 1].name);
      return { keys, list_complete: false, cursor: btoa(String.fromCharCode(...last)), cacheStatus: null };
    }
    /** edge's addition (`wasi:keyvalue/atomics`): adds `delta` to the counter at `key`
     * atomically and resolves to the new value. */
    async increment(key, delta = 1) {
      return native.kvIncrement(this.#name, String(key), Number(delta));
    }
  }

  /** `env` of one request: environment variables, then config and secrets, then stores.
   * The host names the declared stores in `EDGE_KV_STORES`; the store `default` is also
   * `env.KV`. */
  const buildEnv = () => {
    const env = native.env();
    const stores = env.EDGE_KV_STORES;
    delete env.EDGE_KV_STORES;
    if (native.config) {
      const flat = native.config();
      for (let i = 0; i < flat.length; i += 2) env[flat[i]] = flat[i + 1];
    }
    if (stores && native.kvGet)
      for (const name of stores.split(",")) {
        const store = new KVNamespace(name);
        env[name] = store;
        if (name === "default") env.KV = store;
      }
    return env;
  };
  // Built when the handler first touches it: reading the config and secrets is a host
  // call and a database read, which most requests (a hello) never need. The first trap
  // fills the proxy's own target with the real entries, and every trap then works on the
  // target: the handler sees a plain object (freezing, defining and listing included).
  const BUILT = new WeakSet();
  const real = (target) => {
    if (!BUILT.has(target)) {
      BUILT.add(target);
      Object.assign(target, buildEnv());
    }
    return target;
  };
  const LAZY_ENV = {
    get: (t, k) => Reflect.get(real(t), k),
    set: (t, k, v) => Reflect.set(real(t), k, v),
    has: (t, k) => Reflect.has(real(t), k),
    deleteProperty: (t, k) => Reflect.deleteProperty(real(t), k),
    ownKeys: (t) => Reflect.ownKeys(real(t)),
    getOwnPropertyDescriptor: (t, k) => Reflect.getOwnPropertyDescriptor(real(t), k),
    defineProperty: (t, k, d) => Reflect.defineProperty(real(t), k, d),
    preventExtensions: (t) => Reflect.preventExtensions(real(t)),
    setPrototypeOf: (t, p) => Reflect.setPrototypeOf(real(t), p),
  };
  const makeEnv = () => new Proxy({}, LAZY_ENV);

  const listeners = [];

  class FetchEvent {
    #request;
    #response = null;
    #waits;
    constructor(request, waits) {
      this.#request = request;
      this.#waits = waits;
    }
    get type() {
      return "fetch";
    }
    get request() {
      return this.#request;
    }
    respondWith(response) {
      if (this.#response) throw new DOMException("respondWith() was already called", "InvalidStateError");
      this.#response = Promise.resolve(response);
    }
    waitUntil(promise) {
      this.#waits.push(Promise.resolve(promise));
    }
    passThroughOnException() {}
    get responded() {
      return this.#response !== null;
    }
    get response() {
      return this.#response;
    }
  }

  const addEventListener = (type, listener) => {
    if (type === "fetch" && !listeners.includes(listener)) listeners.push(listener);
  };
  const removeEventListener = (type, listener) => {
    const at = listeners.indexOf(listener);
    if (type === "fetch" && at !== -1) listeners.splice(at, 1);
  };

  /** Called once the app's module ran: picks its handler, or explains what is missing. */
  const setApp = (exported, filename) => {
    if (exported && typeof exported.fetch === "function") app = exported;
    else if (typeof exported === "function" && listeners.length === 0)
      throw new TypeError(`${filename}: the default export is a function; export an object with a fetch method: export default { async fetch(request, env) { … } }`);
    else if (listeners.length === 0)
      throw new TypeError(`${filename} has no fetch handler: export default { async fetch(request, env) { … } } or addEventListener("fetch", (event) => event.respondWith(…))`);
  };

  const describeValue = (value) => (value === null ? "null" : typeof value === "object" ? `an object (${inspect(value, 2)})` : `${typeof value} ${inspect(value, 1)}`);

  // The handler's `env` and `context`, made once: an instance serves one request at a time
  // (edge starts a fresh one for each), and `env` is filled on first touch, at run time.
  let waits = [];
  const ENV = makeEnv();
  const CONTEXT = { waitUntil: (p) => void waits.push(Promise.resolve(p)), passThroughOnException() {} };

  /**
   * One request, start to finish: handler, then the response, head and body. Returns
   * undefined when all of it is done, or a promise of the rest: a handler that answers at
   * once (not async) with a body in memory costs no promise, job or async resumption.
   */
  const dispatch = (method) => {
    rng = null;
    timeOrigin = native.now();
    waits = [];
    const request = makeIncoming(method, null, null);
    if (!app) return dispatchEvent(request, method);
    const response = app.fetch(request, ENV, CONTEXT);
    if (response !== null && typeof response === "object" && typeof response.then === "function")
      return Promise.resolve(response).then((settled) => respond(settled, method));
    return respond(response, method);
  };

  const dispatchEvent = async (request, method) => {
    const event = new FetchEvent(request, waits);
    for (const listener of listeners) {
      if (typeof listener === "function") listener.call(globalThis, event);
      else listener.handleEvent(event);
    }
    if (!event.responded) throw new Error("no fetch listener called event.respondWith()");
    await respond(await event.response, method);
  };

  /** Checks and sends the handler's response; a promise if streaming or `waitUntil` remain. */
  const respond = (response, method) => {
    if (!(response instanceof Response))
      throw new TypeError(`the fetch handler must return a Response, not ${describeValue(response)}`);
    if (response.type === "error") throw new TypeError("the fetch handler returned Response.error()");
    const streaming = send(response, method === "HEAD");
    if (streaming || waits.length > 0) return finish(streaming);
    return undefined;
  };

  const finish = async (streaming) => {
    if (streaming) await streaming;
    if (waits.length > 0)
      for (const outcome of await Promise.allSettled(waits))
        if (outcome.status === "rejected") console.error("Uncaught (in waitUntil)", outcome.reason);
  };

  /** Sends the response: at once for a body in memory, else returns the streaming promise. */
  const send = (response, head) => {
    const body = Body.take(response);
    const headers = response.headers;
    if (body === null || head) {
      native.respond(response.status, flatHeaders(headers), EMPTY);
      if (body instanceof ReadableStream) return body.cancel();
    } else if (body instanceof Uint8Array) {
      // `true`: the host adds content-length unless the headers have it or transfer-encoding.
      native.respond(response.status, flatHeaders(headers), body, true);
    } else if (body === INCOMING) {
      native.respond(response.status, flatHeaders(headers));
      for (let chunk = native.read(); chunk !== undefined; chunk = native.read()) native.write(chunk);
      native.finish();
    } else {
      native.respond(response.status, flatHeaders(headers));
      return pump(body);
    }
    return undefined;
  };
  const EMPTY = new Uint8Array(0);

  const pump = async (body) => {
    for await (const chunk of body) {
      const bytes = typeof chunk === "string" ? native.encode(chunk) : asBytes(chunk);
      if (!bytes) throw new TypeError(`response body chunks must be Uint8Array, not ${describeValue(chunk)}`);
      if (bytes.length) native.write(bytes);
    }
    native.finish();
  };

  let timeOrigin = native.now();
  const performance = { now: () => native.now() - timeOrigin, get timeOrigin() { return timeOrigin; } };

  // --------------------------------------------------------------------------- globals

  for (const [name, value] of Object.entries({
    console, TextEncoder, TextDecoder, Headers, URL, URLSearchParams, ReadableStream, Request, Response, FetchEvent,
    fetch, crypto, setTimeout, clearTimeout, setInterval, clearInterval: clearTimeout, queueMicrotask, atob, btoa,
    addEventListener, removeEventListener, performance, self: globalThis,
  }))
    define(name, value);

  // Warm-up, at build time: one object of each kind the request path makes, kept alive.
  // QuickJS hash-conses object shapes and interns atoms; with these in the snapshot a
  // request reuses them instead of building them in its fresh instance.
  const keep = [];
  {
    const request = makeIncoming("GET", "http://localhost/", ["host", "localhost"]);
    keep.push(request, request.headers, new URL(request.url), new URL("http://localhost/").searchParams);
    const response = new Response("warm", { status: 200, headers: { "content-type": "text/plain" } });
    response.headers.set("content-length", "4");
    keep.push(response, flatHeaders(response.headers), Response.json({ warm: true }), new Response(null));
    keep.push(Promise.resolve(response).then((r) => r));
  }

  return { setApp, dispatch, nextTimer, runTimers, keep };
})();

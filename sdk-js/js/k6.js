// edge:k6.js — k6's JavaScript API for loadrig's virtual users, on QuickJS-NG, web.js
// and a few native functions (`__k6native`, see engine/src/k6.rs).
//
// Evaluated once, when loadrig builds a script's snapshot, before the script's module;
// Wizer snapshots the result, so nothing here is parsed per VU or per iteration. Evaluates
// to the object the engine calls: `modules` (what `import … from "k6/…"` gets), and the
// lifecycle hooks `options`, `setup`, `iteration`, `teardown`, `handleSummary`.
(() => {
  const n = globalThis.__k6native;
  delete globalThis.__k6native;

  const flatTags = (tags) => {
    const out = [];
    if (tags && typeof tags === "object") for (const [k, v] of Object.entries(tags)) out.push(String(k), String(v));
    return out;
  };
  const bytesOf = (data) => {
    if (data == null) return new Uint8Array(0);
    if (typeof data === "string") return new TextEncoder().encode(data);
    if (data instanceof Uint8Array) return data;
    if (data instanceof ArrayBuffer) return new Uint8Array(data);
    if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    return new TextEncoder().encode(String(data));
  };
  const arrayBufferOf = (bytes) => bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);

  let initDone = false;

  // ------------------------------------------------------------------------ context

  const ctx = () => n.context();
  for (const [name, get] of Object.entries({
    __VU: () => ctx().vu,
    __ITER: () => ctx().iteration,
  }))
    Object.defineProperty(globalThis, name, { get, configurable: true });
  const ENV = {};
  const refreshEnv = () => {
    for (const k of Object.keys(ENV)) delete ENV[k];
    Object.assign(ENV, n.env());
  };
  refreshEnv();
  Object.defineProperty(globalThis, "__ENV", { value: ENV, writable: true, configurable: true });

  // --------------------------------------------------------------------------- k6

  function check(value, sets, tags) {
    let all = true;
    for (const [name, test] of Object.entries(sets || {})) {
      let ok;
      try {
        ok = typeof test === "function" ? !!test(value) : !!test;
      } catch (e) {
        console.error(`check "${name}" threw: ${e}`);
        ok = false;
      }
      n.check(name, ok, flatTags(tags));
      all = all && ok;
    }
    return all;
  }

  function group(name, fn) {
    n.groupEnter(String(name));
    let leave = true;
    try {
      const r = fn();
      if (r && typeof r.then === "function") {
        leave = false;
        return r.finally(() => n.groupLeave());
      }
      return r;
    } finally {
      if (leave) n.groupLeave();
    }
  }

  function sleep(seconds) {
    n.sleep(Number(seconds) || 0);
  }

  function fail(message) {
    throw new Error(message === undefined ? "fail() called" : String(message));
  }

  const k6 = { check, group, sleep, fail, randomSeed: () => {} };

  // ----------------------------------------------------------------------- metrics

  class Metric {
    constructor(name, kind, isTime) {
      if (initDone) throw new Error("metrics must be declared in the init context (top-level code)");
      this.name = String(name);
      this._kind = kind;
      this._time = !!isTime;
    }
    add(value, tags) {
      const v = this._kind === "rate" ? (value ? 1 : 0) : Number(value);
      const err = n.add(this.name, this._kind, this._time, v, flatTags(tags));
      if (err) throw new Error(err);
    }
  }
  class Counter extends Metric {
    constructor(name) {
      super(name, "counter", false);
    }
  }
  class Gauge extends Metric {
    constructor(name, isTime) {
      super(name, "gauge", isTime);
    }
  }
  class Rate extends Metric {
    constructor(name) {
      super(name, "rate", false);
    }
  }
  class Trend extends Metric {
    constructor(name, isTime) {
      super(name, "trend", isTime);
    }
  }

  // ------------------------------------------------------------------------ http

  const canonical = (name) => name.toLowerCase().replace(/(^|-)([a-z])/g, (_, d, c) => d + c.toUpperCase());
  // The names most responses carry, canonicalized without a regex.
  const CANONICAL = Object.create(null);
  for (const h of ["content-type", "content-length", "date", "server", "etag", "location", "set-cookie",
    "cache-control", "connection", "server-timing", "last-modified", "vary", "transfer-encoding"])
    CANONICAL[h] = canonical(h);
  // The VU's cookies, kept across iterations: domain → Map(`path\0name` → cookie), a
  // cookie being { name, value, path, expires } (expires: ms since the epoch, or Infinity).
  const jar = new Map();
  // Whether the jar has never held a cookie (a flag: `jar.size` is a native call).
  let jarEmpty = true;

  // RFC 6265 §5.1.4: the directory of the request path.
  const defaultPath = (path) => {
    const p = path.split("?")[0];
    const slash = p.lastIndexOf("/");
    return slash <= 0 ? "/" : p.slice(0, slash);
  };
  const pathMatches = (requestPath, cookiePath) =>
    requestPath === cookiePath ||
    (requestPath.startsWith(cookiePath) && (cookiePath.endsWith("/") || requestPath[cookiePath.length] === "/"));

  const formEncode = (obj) =>
    Object.entries(obj)
      .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v == null ? "" : String(v))}`)
      .join("&");

  function parseSetCookie(host, requestPath, value, cookies) {
    const [pair, ...attrs] = value.split(";");
    const eq = pair.indexOf("=");
    if (eq < 0) return;
    const name = pair.slice(0, eq).trim();
    const val = pair.slice(eq + 1).trim();
    let domain = host;
    let path = defaultPath(requestPath);
    let expires = Infinity;
    let maxAge;
    for (const a of attrs) {
      const i = a.indexOf("=");
      const key = (i < 0 ? a : a.slice(0, i)).trim().toLowerCase();
      const v = i < 0 ? "" : a.slice(i + 1).trim();
      if (key === "domain" && v) domain = v.replace(/^\./, "").toLowerCase();
      else if (key === "path" && v.startsWith("/")) path = v;
      else if (key === "max-age" && /^-?\d+$/.test(v)) maxAge = Number(v);
      else if (key === "expires") {
        const t = Date.parse(v);
        if (!Number.isNaN(t)) expires = t;
      }
    }
    // Max-Age wins over Expires (§5.3 step 3).
    if (maxAge !== undefined) expires = maxAge <= 0 ? -Infinity : Date.now() + maxAge * 1000;
    if (!jar.has(domain)) jar.set(domain, new Map());
    jarEmpty = false;
    const key = `${path}\0${name}`;
    if (expires <= Date.now()) jar.get(domain).delete(key);
    else jar.get(domain).set(key, { name, value: val, path, expires });
    (cookies[name] ||= []).push({ name, value: val, domain, path, expires: expires === Infinity ? 0 : expires });
  }

  // The cookies for a request, longer paths first (§5.4); expired ones are dropped.
  function jarCookies(host, path) {
    const now = Date.now();
    const p = path.split("?")[0] || "/";
    const found = [];
    for (const [domain, cookies] of jar) {
      if (host !== domain && !host.endsWith(`.${domain}`)) continue;
      for (const [key, c] of cookies) {
        if (c.expires <= now) cookies.delete(key);
        else if (pathMatches(p, c.path)) found.push(c);
      }
    }
    return found.sort((a, b) => b.path.length - a.path.length);
  }

  const cookieHeader = (host, path) =>
    jarCookies(host, path)
      .map((c) => `${c.name}=${c.value}`)
      .join("; ");

  // The k6 error codes loadrig produces (k6 documents the full list).
  const errorCode = (message) => {
    if (/ConnectionRefused/.test(message)) return 1212;
    if (/Timeout/.test(message)) return 1050;
    if (/DestinationNotFound|DNS/.test(message)) return 1100;
    if (/ConnectionTerminated|reset/i.test(message)) return 1220;
    return 1000;
  };

  // A plain absolute http(s) URL, split without the general URL parser (the hot path).
  const SIMPLE_URL = /^(https?):\/\/([a-z0-9.\-]+(?::[0-9]+)?)(\/[^#\s]*)?$/;

  const NO_TIMINGS = Object.freeze({ blocked: 0, connecting: 0, tls_handshaking: 0, sending: 0, waiting: 0, receiving: 0, duration: 0 });

  // A response's headers, from the host's packed `name\0value\0…` (names in lower case):
  // canonical names, repeated ones joined with ", ". Set-Cookie goes into the VU's jar
  // and `cookies`; the Location, if any, is returned.
  function parseHeaders(packed, hostname, path, out, cookies) {
    let location;
    if (packed === "") return location;
    const hs = packed.split("\0");
    for (let i = 0; i < hs.length; i += 2) {
      const raw = hs[i];
      const name = CANONICAL[raw] ?? canonical(raw);
      const value = hs[i + 1];
      if (name === "Set-Cookie") {
        if (cookies !== null) parseSetCookie(hostname, path, value, cookies);
      } else if (name === "Location") location = value;
      out[name] = out[name] === undefined ? value : `${out[name]}, ${value}`;
    }
    return location;
  }
  // Where a response keeps what its lazily built fields are made from: a symbol, so it is
  // not among the fields a script lists or serializes.
  const MADE = Symbol("made");

  class Response {
    // The fields every script reads are set at once, in one order (one shape for all);
    // `headers`, `cookies`, `timings` and `request` are built on first use, from `made`:
    // [host answer, packed headers or parsed object, cookies, method, url, headers, body,
    // user agent].
    constructor(status, body, url, made) {
      this.status = status;
      this.body = body;
      this.url = url;
      this[MADE] = made;
    }
    json(selector) {
      if (typeof this.body !== "string") throw new Error("the body is not text (responseType is not \"text\")");
      let v = JSON.parse(this.body);
      if (selector !== undefined) {
        for (const part of String(selector).split(".")) {
          if (v == null) return undefined;
          const m = /^(.*)\[(\d+)\]$/.exec(part);
          v = m ? (m[1] ? v[m[1]] : v)?.[Number(m[2])] : v[part];
        }
      }
      return v;
    }
    // JSON.stringify(res) shows every field, as k6's does.
    toJSON() {
      const o = {};
      for (const k of ["status", "status_text", "body", "headers", "cookies", "url", "proto", "error", "error_code", "timings", "request"]) o[k] = this[k];
      return o;
    }
  }
  // What a response that was answered has, on the prototype: making one sets four fields,
  // not seven. One without an answer (`unanswered`) sets its own.
  Object.assign(Response.prototype, { proto: "HTTP/1.1", error: "", error_code: 0 });
  const unanswered = (href, message, made) => {
    const res = new Response(0, null, href, made);
    res.proto = "";
    res.error = message;
    res.error_code = errorCode(message);
    return res;
  };
  // A lazily built field: made on first read, then an ordinary own property; assignable.
  const own = (res, name, value) => {
    Object.defineProperty(res, name, { value, writable: true, enumerable: true, configurable: true });
    return value;
  };
  for (const [name, make] of Object.entries({
    status_text: (res) => (res.status === 0 ? "" : `${res.status}`),
    headers: (res) => {
      const m = res[MADE];
      if (typeof m[1] !== "string") return m[1];
      const out = {};
      parseHeaders(m[1], "", "", out, null);
      return out;
    },
    cookies: (res) => res[MADE][2] || {},
    timings: (res) => {
      const r = res[MADE][0];
      return r[0] === 0 ? NO_TIMINGS : { blocked: r[3], connecting: r[4], tls_handshaking: r[5], sending: r[6], waiting: r[7], receiving: r[8], duration: r[9] };
    },
    request: (res) => {
      const [, , , method, url, headers, body, agent] = res[MADE];
      return { method, url, headers: headers || { "User-Agent": agent }, body: body ?? "" };
    },
  }))
    Object.defineProperty(Response.prototype, name, {
      get() {
        return own(this, name, make(this));
      },
      set(v) {
        own(this, name, v);
      },
      configurable: true,
    });

  // URLs split into `scheme\0authority\0path` and the host name, a few kept per VU: most
  // scripts request the same handful of URLs again and again.
  const splitCache = new Map();
  function splitUrl(href) {
    let parts = splitCache.get(href);
    if (parts !== undefined) return parts;
    const m = SIMPLE_URL.exec(href);
    let scheme, authority, path, hostname;
    if (m !== null && !(m[3] !== undefined && m[3].includes("/."))) {
      scheme = m[1];
      authority = m[2];
      path = m[3] === undefined ? "/" : m[3];
      const colon = authority.indexOf(":");
      hostname = colon < 0 ? authority : authority.slice(0, colon);
    } else {
      const u = new URL(href);
      scheme = u.protocol.slice(0, -1);
      authority = u.host;
      path = u.pathname + u.search;
      hostname = u.hostname;
    }
    // The last: the head of a GET, made once.
    parts = [`${scheme}\0${authority}\0${path}`, hostname, path, `GET\0${scheme}\0${authority}\0${path}`];
    if (splitCache.size >= 64) splitCache.clear();
    splitCache.set(href, parts);
    return parts;
  }

  // The packed headers of a request without params (the User-Agent alone).
  let plainHeaders;

  const request = (method, url, body, params) => send(String(method).toUpperCase(), url, body, params);

  // The User-Agent header alone, packed, for `agent`.
  const plainFlat = (agent) =>
    plainHeaders !== undefined && plainHeaders[0] === agent ? plainHeaders[1] : (plainHeaders = [agent, `User-Agent\0${agent}`])[1];

  // `http.get(url)` without params while the jar is empty: what most scripts do most. The
  // same request `send` makes, with less to decide; an answer that needs more than a
  // Response (an error, a redirect, a cookie) is finished by `send`.
  // What a plain request takes from `options` (fixed once the script's init code ran).
  let plain = false;
  let plainAgent, plainFlatHeaders, plainMode;
  const nativeHttp = n.http;
  // `http.get(url)` without params while the jar is empty: what most scripts do most. The
  // same request `send` makes, with less to decide; an answer that needs more than a
  // Response (an error, a redirect, a cookie) is finished by `send`.
  function get(href, params) {
    if (params !== undefined || typeof href !== "string" || !jarEmpty) return send("GET", href, null, params);
    if (!plain) {
      plainAgent = options.userAgent !== undefined ? String(options.userAgent) : USER_AGENT;
      plainFlatHeaders = plainFlat(plainAgent);
      plainMode = options.discardResponseBodies ? 0 : 1;
      plain = true;
    }
    const parts = splitCache.get(href) ?? splitUrl(href);
    const r = nativeHttp(parts[3], plainFlatHeaders, undefined, "", 60000, plainMode);
    const status = r[0];
    if (status === 0 || r[10] || status === 301 || status === 302 || status === 303 || status === 307 || status === 308)
      return send("GET", href, null, undefined, r);
    return new Response(status, r[2], href, [r, r[1], null, "GET", href, null, null, plainAgent]);
  }

  // `method` in upper case; `answer`, if given, is the host's answer to the first request
  // (already sent by `get`).
  function send(method, url, body, params, answer) {
    let href = typeof url === "object" && url !== null && url.url ? url.url : String(url);
    const named = typeof url === "object" && url !== null && url.name;
    const maxRedirects = params?.redirects ?? options.maxRedirects ?? 10;
    const responseType = params?.responseType || (options.discardResponseBodies ? "none" : "text");
    let timeout = params?.timeout ?? 60000;
    if (typeof timeout === "string") timeout = parseDuration(timeout);
    let packedTags = "";
    if (params?.tags || named) {
      const tags = Object.assign({}, params?.tags || {});
      if (named && !tags.name) tags.name = url.name;
      packedTags = flatTags(tags).join("\0");
    }
    // The request's own headers (null: the User-Agent alone).
    let headers = null;
    let hasType = false;
    let hasAgent = false;
    if (params?.headers) {
      headers = {};
      for (const k in params.headers) {
        headers[k] = String(params.headers[k]);
        const l = k.toLowerCase();
        if (l === "content-type") hasType = true;
        else if (l === "user-agent") hasAgent = true;
      }
    }
    let payload = null;
    if (body != null && !(typeof body === "string") && !(body instanceof ArrayBuffer) && !ArrayBuffer.isView(body)) {
      payload = formEncode(body);
      if (!hasType) (headers ||= {})["Content-Type"] = "application/x-www-form-urlencoded";
    } else if (body != null) {
      payload = body;
    }
    const agent = options.userAgent !== undefined ? String(options.userAgent) : USER_AGENT;
    if (headers !== null && !hasAgent) headers["User-Agent"] = agent;
    let redirects = 0;
    let cookies = null;
    // What the host does with the response body: 0 drop it, 1 text, 2 bytes.
    const bodyMode = responseType === "text" ? 1 : responseType === "binary" ? 2 : 0;
    for (;;) {
      const parts = splitUrl(href);
      const hostname = parts[1];
      const path = parts[2];
      let r = answer;
      answer = undefined;
      if (r === undefined) {
        let flat;
        const fromJar = jarEmpty ? "" : cookieHeader(hostname, path);
        if (headers === null && fromJar === "" && !params?.cookies) {
          flat = plainFlat(agent);
        } else {
          const list = [];
          let mine = "";
          const hs = headers || { "User-Agent": agent };
          for (const k in hs) {
            if (k.length === 6 && k.toLowerCase() === "cookie") mine = hs[k];
            else list.push(k, hs[k]);
          }
          const cookie = mine && fromJar ? `${mine}; ${fromJar}` : mine || fromJar;
          if (cookie) list.push("Cookie", cookie);
          if (params?.cookies) for (const [k, v] of Object.entries(params.cookies)) list.push("Cookie", `${k}=${typeof v === "object" ? v.value : v}`);
          flat = list.join("\0");
        }
        const sent = payload == null ? undefined : bytesOf(payload);
        r = n.http(`${method}\0${parts[0]}`, flat, sent, packedTags, +timeout, bodyMode);
      }
      const status = r[0];
      if (status === 0) return unanswered(href, r[1], [r, {}, cookies, method, href, headers, payload, agent]);
      // Headers are parsed now only when they matter to the VU: a redirect to follow, or
      // cookies for the jar; otherwise on the script's first read of `res.headers`.
      const redirect = status === 301 || status === 302 || status === 303 || status === 307 || status === 308;
      let parsed = r[1];
      let location;
      if (redirect || r[10]) {
        parsed = {};
        location = parseHeaders(r[1], hostname, path, parsed, (cookies ||= {}));
      }
      if (redirect && location && redirects < maxRedirects) {
        redirects++;
        href = new URL(location, href).href;
        if (status === 303 || ((status === 301 || status === 302) && method === "POST")) {
          method = "GET";
          payload = null;
        }
        continue;
      }
      const responseBody = bodyMode === 2 ? arrayBufferOf(r[2]) : r[2];
      return new Response(status, responseBody, href, [r, parsed, cookies, method, href, headers, payload, agent]);
    }
  }

  const USER_AGENT = "loadrig (k6 compatible)";
  const parseDuration = (s) => {
    let ms = 0;
    const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
    let m;
    while ((m = re.exec(s))) ms += Number(m[1]) * { ms: 1, s: 1000, m: 60000, h: 3600000 }[m[2]];
    return ms || Number(s) || 60000;
  };

  const http = {
    request,
    get,
    head: (url, params) => send("HEAD", url, null, params),
    post: (url, body, params) => send("POST", url, body, params),
    put: (url, body, params) => send("PUT", url, body, params),
    patch: (url, body, params) => send("PATCH", url, body, params),
    del: (url, body, params) => send("DELETE", url, body, params),
    options: (url, body, params) => send("OPTIONS", url, body, params),
    // One VU has one instance: the requests of a batch go one after the other.
    batch(requests) {
      const one = (r) => {
        if (typeof r === "string") return request("GET", r, null, {});
        if (Array.isArray(r)) return request(r[0], r[1], r[2] ?? null, r[3]);
        return request(r.method || "GET", r.url, r.body ?? null, r.params);
      };
      if (Array.isArray(requests)) return requests.map(one);
      const out = {};
      for (const [k, r] of Object.entries(requests)) out[k] = one(r);
      return out;
    },
    // http.url`https://x/items/${id}`: the URL, named by its template for tags.
    url(strings, ...values) {
      let url = strings[0];
      let name = strings[0];
      values.forEach((v, i) => {
        url += String(v) + strings[i + 1];
        name += "${}" + strings[i + 1];
      });
      return { url, name, toString: () => url };
    },
    cookieJar: () => ({
      cookiesForURL: (u) => {
        const url = new URL(u);
        const out = {};
        for (const c of jarCookies(url.hostname, url.pathname)) (out[c.name] ||= []).push(c.value);
        return out;
      },
    }),
    expectedStatuses: () => ({}),
    setResponseCallback: () => {},
  };

  // ---------------------------------------------------------------------- encoding

  const toBinaryString = (bytes) => {
    let s = "";
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return s;
  };
  const b64encode = (input, variant = "std") => {
    let s = btoa(toBinaryString(bytesOf(input)));
    if (variant === "url" || variant === "rawurl") s = s.replace(/\+/g, "-").replace(/\//g, "_");
    if (variant === "rawstd" || variant === "rawurl") s = s.replace(/=+$/, "");
    return s;
  };
  const b64decode = (input, variant = "std", format) => {
    let s = String(input).replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    const bin = atob(s);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return format === "s" ? new TextDecoder().decode(bytes) : arrayBufferOf(bytes);
  };
  const encoding = { b64encode, b64decode };

  // ------------------------------------------------------------------------ crypto

  const encodeDigest = (bytes, enc) => {
    if (enc === "hex") return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    if (enc === "base64") return b64encode(bytes, "std");
    if (enc === "base64url") return b64encode(bytes, "url");
    if (enc === "base64rawurl") return b64encode(bytes, "rawurl");
    if (enc === "binary") return arrayBufferOf(bytes);
    throw new Error(`unsupported output encoding ${enc}`);
  };
  const ALGOS = ["md5", "sha1", "sha256", "sha384", "sha512", "sha512_224", "sha512_256"];
  const algo = (a) => {
    const name = String(a).toLowerCase().replace("-", "");
    if (!ALGOS.includes(name)) throw new Error(`unknown hash algorithm ${a}`);
    return name;
  };
  const hasher = (a, key) => {
    const name = algo(a);
    const chunks = [];
    return {
      update(data) {
        chunks.push(bytesOf(data));
        return this;
      },
      digest(enc = "binary") {
        const total = chunks.reduce((s, c) => s + c.length, 0);
        const all = new Uint8Array(total);
        let at = 0;
        for (const c of chunks) {
          all.set(c, at);
          at += c.length;
        }
        return encodeDigest(key === undefined ? n.digest(name, all) : n.hmac(name, bytesOf(key), all), enc);
      },
    };
  };
  const crypto6 = {
    createHash: (a) => hasher(a),
    createHMAC: (a, key) => hasher(a, key),
    hmac: (a, key, data, enc) => hasher(a, key).update(data).digest(enc),
    randomBytes: (size) => arrayBufferOf(crypto.getRandomValues(new Uint8Array(size))),
  };
  for (const name of ALGOS)
    crypto6[name] = (data, enc) => hasher(name).update(data).digest(enc);

  // -------------------------------------------------------------------- k6/data

  class SharedArray {
    constructor(name, fn) {
      if (initDone) throw new Error("SharedArray must be made in the init context (top-level code)");
      if (typeof fn !== "function") throw new TypeError("SharedArray needs a function that returns an array");
      const data = fn();
      if (!Array.isArray(data)) throw new TypeError(`SharedArray ${name}: the function must return an array`);
      // In the snapshot, shared by every VU's copy-on-write memory: frozen, as k6's.
      const deepFreeze = (v) => {
        if (v && typeof v === "object") {
          Object.freeze(v);
          for (const x of Object.values(v)) deepFreeze(x);
        }
        return v;
      };
      return deepFreeze(data);
    }
  }

  // ---------------------------------------------------------------- k6/execution

  const exec = {
    get vu() {
      const c = ctx();
      return { idInTest: c.vu, idInInstance: c.vu, iterationInInstance: c.iteration, iterationInScenario: c.iteration, tags: {}, metrics: { tags: {} } };
    },
    get scenario() {
      const c = ctx();
      return { name: c.scenario, iterationInTest: c.iterationInScenario, iterationInInstance: c.iterationInScenario, executor: "", startTime: 0, progress: 0 };
    },
    get instance() {
      return { vusActive: 0, vusInitialized: 0, iterationsCompleted: 0, iterationsInterrupted: 0, currentTestRunDuration: 0 };
    },
    test: {
      abort(reason) {
        n.abort(reason === undefined ? "test.abort() called" : String(reason));
        throw new Error(`test aborted: ${reason ?? ""}`);
      },
      get options() {
        return options;
      },
    },
  };

  // ----------------------------------------------------------- jslib stand-ins

  // https://jslib.k6.io/k6-summary/…: textSummary and jUnit, offline.
  const fmt = (v, time) => (time ? `${v < 1 ? (v * 1000).toFixed(2) + "µs" : v < 1000 ? v.toFixed(2) + "ms" : (v / 1000).toFixed(2) + "s"}` : Number.isInteger(v) ? String(v) : v.toFixed(4));
  function textSummary(data, opts = {}) {
    const indent = opts.indent ?? " ";
    const lines = [];
    const walk = (g, depth) => {
      const pad = indent.repeat(depth + 1);
      if (g.name) lines.push(`${pad}█ ${g.name}`);
      for (const c of g.checks || []) lines.push(`${pad}  ${c.fails === 0 ? "✓" : "✗"} ${c.name}`);
      for (const sub of g.groups || []) walk(sub, depth + 1);
    };
    walk(data.root_group || {}, 0);
    lines.push("");
    const names = Object.keys(data.metrics || {}).sort();
    const width = Math.max(0, ...names.map((x) => x.length)) + 3;
    for (const name of names) {
      const m = data.metrics[name];
      const v = m.values || {};
      const time = m.contains === "time";
      let text;
      if (m.type === "trend") text = ["avg", "min", "med", "max", "p(90)", "p(95)"].map((k) => `${k}=${fmt(v[k] ?? 0, time)}`).join(" ");
      else if (m.type === "rate") text = `${((v.rate ?? 0) * 100).toFixed(2)}% ✓ ${v.passes ?? 0} ✗ ${v.fails ?? 0}`;
      else if (m.type === "counter") text = `${fmt(v.count ?? 0)} ${fmt(v.rate ?? 0)}/s`;
      else text = `${fmt(v.value ?? 0, time)} min=${fmt(v.min ?? 0, time)} max=${fmt(v.max ?? 0, time)}`;
      const th = m.thresholds ? Object.values(m.thresholds).every((t) => t.ok) ? "✓ " : "✗ " : "  ";
      lines.push(`${indent}${th}${(name + ".".repeat(width)).slice(0, width)}: ${text}`);
    }
    return lines.join("\n") + "\n";
  }
  function jUnit(data) {
    const cases = [];
    for (const [name, m] of Object.entries(data.metrics || {}))
      for (const [expr, t] of Object.entries(m.thresholds || {}))
        cases.push(`<testcase name="${name} - ${expr.replace(/[<>&"]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;" })[c])}">${t.ok ? "" : "<failure/>"}</testcase>`);
    return `<?xml version="1.0"?>\n<testsuites><testsuite name="k6 thresholds" tests="${cases.length}">${cases.join("")}</testsuite></testsuites>\n`;
  }
  // https://jslib.k6.io/k6-utils/…
  const utils = {
    randomIntBetween: (min, max) => Math.floor(Math.random() * (max - min + 1) + min),
    randomItem: (items) => items[Math.floor(Math.random() * items.length)],
    randomString: (length, chars = "abcdefghijklmnopqrstuvwxyz") => Array.from({ length }, () => chars[Math.floor(Math.random() * chars.length)]).join(""),
    uuidv4: () => crypto.randomUUID(),
    findBetween: (content, left, right) => {
      const start = content.indexOf(left);
      if (start < 0) return "";
      const end = content.indexOf(right, start + left.length);
      return end < 0 ? "" : content.slice(start + left.length, end);
    },
    normalDistributionStages: () => [],
  };

  // --------------------------------------------------------------------- open()

  Object.defineProperty(globalThis, "open", {
    value: (path, mode) => {
      if (initDone) throw new Error("open() is only available in the init context (top-level code)");
      const bytes = n.readFile(String(path));
      return mode === "b" ? arrayBufferOf(bytes) : new TextDecoder().decode(bytes);
    },
    writable: true,
    configurable: true,
  });

  // ---------------------------------------------------------------- lifecycle

  let options = {};
  let mod = {};
  let lastData;
  let envRead = false;
  let parsed;
  const dataOf = (json) => {
    if (json !== lastData) {
      lastData = json;
      parsed = json === "" ? undefined : JSON.parse(json);
    }
    return parsed;
  };

  // ------------------------------------------------------------------------ k6/ws

  // k6/ws: `connect` opens the session, runs the callback (which registers handlers and
  // timers), then drives it one host event at a time until it closes, as k6's blocking
  // event loop does. Metrics (ws_connecting, ws_sessions, ws_msgs_sent/received, ws_ping,
  // ws_session_duration) are recorded by the host.
  const WS_EVENTS = ["timeout", "text", "binary", "ping", "pong", "close", "error"];
  class Socket {
    constructor(handle) {
      this._h = handle;
      this._on = {};
      this._timers = [];
      this._done = false;
    }
    on(event, handler) {
      (this._on[event] ??= []).push(handler);
    }
    _emit(event, ...args) {
      for (const f of this._on[event] ?? []) f.apply(this, args);
    }
    _fail(error) {
      if (error == null) return;
      this._emit("error", { error: () => error, toString: () => error });
    }
    send(data) {
      this._fail(n.wsSend(this._h, bytesOf(String(data)), false));
    }
    sendBinary(data) {
      this._fail(n.wsSend(this._h, bytesOf(data), true));
    }
    ping() {
      this._fail(n.wsPing(this._h));
    }
    close(code) {
      n.wsClose(this._h, Number(code) || 1000);
    }
    setTimeout(fn, ms) {
      this._timers.push({ at: Date.now() + (Number(ms) || 0), fn, every: 0 });
    }
    setInterval(fn, ms) {
      const every = Math.max(Number(ms) || 0, 1);
      this._timers.push({ at: Date.now() + every, fn, every });
    }
    // Runs the timers that are due; how long until the next one (-1: none).
    _tick() {
      const now = Date.now();
      for (const t of this._timers.filter((t) => t.at <= now)) {
        if (this._done) break;
        if (t.every) t.at = now + t.every;
        else this._timers.splice(this._timers.indexOf(t), 1);
        t.fn.call(this);
      }
      if (this._timers.length === 0) return -1;
      return Math.max(0, Math.min(...this._timers.map((t) => t.at)) - Date.now());
    }
  }
  function wsConnect(url, params, callback) {
    if (typeof params === "function") [params, callback] = [{}, params];
    params = params || {};
    url = String(url);
    const flat = [];
    for (const k in params.headers || {}) flat.push(k, String(params.headers[k]));
    let timeout = params.timeout ?? 60000;
    if (typeof timeout === "string") timeout = parseDuration(timeout);
    const r = n.wsOpen(url, flat.join("\0"), flatTags(params.tags).join("\0"), +timeout);
    if (r[0] === 0) return { url, status: r[1], headers: {}, body: null, error: r[2] };
    const headers = {};
    const hs = r[2] === "" ? [] : r[2].split("\0");
    for (let i = 0; i < hs.length; i += 2) headers[canonical(hs[i])] = hs[i + 1];
    const socket = new Socket(r[0]);
    try {
      if (typeof callback === "function") callback(socket);
      socket._emit("open");
      while (!socket._done) {
        const wait = socket._tick();
        if (socket._done) break;
        const [kind, data] = n.wsNext(socket._h, wait);
        switch (WS_EVENTS[kind]) {
          case "text":
            socket._emit("message", data);
            break;
          case "binary":
            socket._emit("binaryMessage", arrayBufferOf(data));
            break;
          case "ping":
          case "pong":
            socket._emit(WS_EVENTS[kind]);
            break;
          case "close":
            socket._done = true;
            socket._emit("close", data);
            break;
          case "error":
            socket._done = true;
            socket._fail(data);
            socket._emit("close", 1006);
            break;
        }
      }
    } finally {
      if (!socket._done) n.wsDiscard(socket._h);
      socket._done = true;
    }
    return { url, status: r[1], headers, body: null, error: "" };
  }
  const ws = { connect: wsConnect };

  const modules = {
    k6: Object.assign({ default: k6 }, k6),
    "k6/http": Object.assign({ default: http }, http),
    "k6/metrics": { Counter, Gauge, Rate, Trend },
    "k6/encoding": Object.assign({ default: encoding }, encoding),
    "k6/crypto": Object.assign({ default: crypto6 }, crypto6),
    "k6/data": { SharedArray },
    "k6/execution": { default: exec },
    "k6/timers": { setTimeout, clearTimeout, setInterval, clearInterval },
    "k6/ws": Object.assign({ default: ws }, ws),
    "jslib:k6-summary": { textSummary, jUnit },
    "jslib:k6-utils": utils,
  };

  Object.defineProperty(globalThis, "__k6mods", { value: modules, configurable: true });

  return {
    modules,
    // The source of a built-in module: re-exports of `modules[name]`.
    moduleSource(name) {
      const m = modules[name];
      if (!m) return null;
      const key = JSON.stringify(name);
      let src = "default" in m ? `export default globalThis.__k6mods[${key}].default;\n` : "";
      for (const k of Object.keys(m)) if (k !== "default") src += `export const ${k} = globalThis.__k6mods[${key}].${k};\n`;
      return src;
    },
    // After the script's module ran: keep its exports and options, close the init context.
    setModule(ns) {
      mod = ns;
      options = ns.options || {};
      initDone = true;
      plain = false;
      // As k6: every function a scenario runs must exist before the test starts.
      const scenarios = Object.entries(options.scenarios || { default: {} });
      for (const [name, s] of scenarios) {
        const fn = (s && s.exec) || "default";
        if (typeof ns[fn] !== "function")
          throw new Error(fn === "default"
            ? "the script has no default export: write `export default function () { … }`, or give each scenario an `exec`"
            : `scenario \`${name}\` runs \`${fn}\`, which the script does not export as a function`);
      }
      return JSON.stringify(options);
    },
    setup() {
      refreshEnv();
      if (typeof mod.setup !== "function") return "null";
      const r = mod.setup();
      const done = (v) => (v === undefined ? "null" : JSON.stringify(v));
      return r && typeof r.then === "function" ? r.then(done) : done(r);
    },
    // What an iteration of `name` calls, and its argument: `[function, setup data]`. The
    // engine calls the function itself, and comes back here when `name` or `data` change.
    iteration(name, data) {
      // A VU's environment is fixed for the run: read it at its first iteration only.
      if (!envRead) {
        refreshEnv();
        envRead = true;
      }
      const fn = mod[name];
      if (typeof fn !== "function")
        throw new Error(name === "default" ? "the script has no default export (export default function () { … })" : `the script exports no function \`${name}\` (a scenario's exec)`);
      return [fn, dataOf(data)];
    },
    teardown(data) {
      refreshEnv();
      if (typeof mod.teardown === "function") return mod.teardown(dataOf(data));
    },
    handleSummary(summary) {
      if (typeof mod.handleSummary !== "function") return null;
      const toFiles = (out) => {
        const files = [];
        for (const [name, content] of Object.entries(out || {}))
          files.push(name, typeof content === "string" ? new TextEncoder().encode(content) : bytesOf(content));
        return files;
      };
      const r = mod.handleSummary(JSON.parse(summary));
      return r && typeof r.then === "function" ? r.then(toFiles) : toFiles(r);
    },
  };
})();

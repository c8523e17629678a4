// Type declarations for edge JavaScript apps (`edge build app.js`).
//
// The handler API, and the globals sdk-js provides on QuickJS-NG. Reference it from a
// TypeScript or checked-JS project:
//
//   /// <reference path="path/to/sdk-js/types/edge.d.ts" />
//
// Only what is listed here exists at run time: there is no DOM, no Node API, no Blob or
// FormData. Everything else of ES2023 (Map, Promise, async/await, JSON, typed arrays,
// BigInt, Intl-free Date…) is QuickJS-NG's.

/** The app's environment, built for each request: the `[env]` table of its manifest,
 * then its `[config]` table and its secrets (`edge secret set`), as strings; then each
 * key-value store its manifest declares (`key_value_stores`), by name. */
interface EdgeEnv {
  /** The store named `default`, when the manifest declares it. */
  readonly KV?: KVNamespace;
  readonly [name: string]: string | KVNamespace | undefined;
}

/** A page of `KVNamespace.list`. */
interface KVListResult {
  keys: { name: string }[];
  list_complete: boolean;
  /** Pass it back as `cursor` for the next page; absent on the last one. */
  cursor?: string;
  cacheStatus: null;
}

/** One of the app's key-value stores (`wasi:keyvalue`), in Cloudflare Workers KV's shape.
 * Reads always see the latest acknowledged write. */
interface KVNamespace {
  get(key: string, type?: "text" | { type?: "text" }): Promise<string | null>;
  get<T = unknown>(key: string, type: "json" | { type: "json" }): Promise<T | null>;
  get(key: string, type: "arrayBuffer" | { type: "arrayBuffer" }): Promise<ArrayBuffer | null>;
  get(key: string, type: "stream" | { type: "stream" }): Promise<ReadableStream<Uint8Array> | null>;
  /** Expiry and metadata options are refused: edge's stores keep neither. */
  put(key: string, value: string | ArrayBuffer | ArrayBufferView | ReadableStream<Uint8Array>): Promise<void>;
  delete(key: string): Promise<void>;
  /** Keys in sorted order; reads every key of the store to filter by `prefix`. */
  list(options?: { prefix?: string; limit?: number; cursor?: string }): Promise<KVListResult>;
  /** edge's addition: atomically adds `delta` (default 1) to the counter at `key`. */
  increment(key: string, delta?: number): Promise<number>;
}

/** The third argument of `fetch`. */
interface EdgeContext {
  /** Keeps the instance alive until `promise` settles, after the response is sent. */
  waitUntil(promise: Promise<unknown>): void;
  /** Accepted for compatibility; it does nothing. */
  passThroughOnException(): void;
}

/** What an ES-module app exports by default. */
interface EdgeHandler {
  fetch(request: Request, env: EdgeEnv, ctx: EdgeContext): Response | Promise<Response>;
}

// ------------------------------------------------------------------------ fetch events

interface FetchEvent {
  readonly type: "fetch";
  readonly request: Request;
  respondWith(response: Response | Promise<Response>): void;
  waitUntil(promise: Promise<unknown>): void;
  passThroughOnException(): void;
}
declare function addEventListener(type: "fetch", listener: (event: FetchEvent) => void): void;
declare function removeEventListener(type: "fetch", listener: (event: FetchEvent) => void): void;

// ---------------------------------------------------------------------------- bodies

type BufferSource = ArrayBuffer | ArrayBufferView;
type BodyInit = string | BufferSource | URLSearchParams | ReadableStream<Uint8Array>;
type HeadersInit = Headers | [string, string][] | Record<string, string>;

interface Body {
  readonly body: ReadableStream<Uint8Array> | null;
  readonly bodyUsed: boolean;
  arrayBuffer(): Promise<ArrayBuffer>;
  bytes(): Promise<Uint8Array>;
  text(): Promise<string>;
  json<T = unknown>(): Promise<T>;
}

declare class Headers implements Iterable<[string, string]> {
  constructor(init?: HeadersInit);
  append(name: string, value: string): void;
  delete(name: string): void;
  get(name: string): string | null;
  getSetCookie(): string[];
  has(name: string): boolean;
  set(name: string, value: string): void;
  forEach(callback: (value: string, name: string, headers: Headers) => void, thisArg?: unknown): void;
  entries(): IterableIterator<[string, string]>;
  keys(): IterableIterator<string>;
  values(): IterableIterator<string>;
  [Symbol.iterator](): IterableIterator<[string, string]>;
}

interface RequestInit {
  method?: string;
  headers?: HeadersInit;
  body?: BodyInit | null;
  redirect?: "follow" | "manual" | "error";
  signal?: unknown;
}

declare class Request implements Body {
  constructor(input: string | URL | Request, init?: RequestInit);
  readonly method: string;
  /** Absolute: `http://{host}{path}?{query}` for the request being served. */
  readonly url: string;
  readonly headers: Headers;
  readonly redirect: "follow" | "manual" | "error";
  readonly body: ReadableStream<Uint8Array> | null;
  readonly bodyUsed: boolean;
  arrayBuffer(): Promise<ArrayBuffer>;
  bytes(): Promise<Uint8Array>;
  text(): Promise<string>;
  json<T = unknown>(): Promise<T>;
  clone(): Request;
}

interface ResponseInit {
  status?: number;
  statusText?: string;
  headers?: HeadersInit;
}

declare class Response implements Body {
  constructor(body?: BodyInit | null, init?: ResponseInit);
  static json(data: unknown, init?: ResponseInit): Response;
  static redirect(url: string | URL, status?: 301 | 302 | 303 | 307 | 308): Response;
  static error(): Response;
  readonly status: number;
  readonly statusText: string;
  readonly ok: boolean;
  readonly headers: Headers;
  readonly url: string;
  readonly redirected: boolean;
  readonly type: "default" | "basic" | "error";
  readonly body: ReadableStream<Uint8Array> | null;
  readonly bodyUsed: boolean;
  arrayBuffer(): Promise<ArrayBuffer>;
  bytes(): Promise<Uint8Array>;
  text(): Promise<string>;
  json<T = unknown>(): Promise<T>;
  clone(): Response;
}

/**
 * An outbound HTTP request. Allowed only to the hosts in the manifest's
 * `allowed_outbound_hosts`; otherwise it rejects with a `TypeError` whose message says
 * `HttpRequestDenied`. Redirects are followed (up to 20) unless `redirect` says otherwise.
 */
declare function fetch(input: string | URL | Request, init?: RequestInit): Promise<Response>;

// --------------------------------------------------------------------------- streams

interface ReadableStreamDefaultController<R> {
  enqueue(chunk: R): void;
  close(): void;
  error(reason?: unknown): void;
  readonly desiredSize: number;
}

interface UnderlyingSource<R> {
  start?(controller: ReadableStreamDefaultController<R>): void | Promise<void>;
  pull?(controller: ReadableStreamDefaultController<R>): void | Promise<void>;
  cancel?(reason?: unknown): void | Promise<void>;
}

interface ReadableStreamDefaultReader<R> {
  read(): Promise<{ done: false; value: R } | { done: true; value: undefined }>;
  releaseLock(): void;
  cancel(reason?: unknown): Promise<void>;
  readonly closed: Promise<void>;
}

declare class ReadableStream<R = Uint8Array> implements AsyncIterable<R> {
  constructor(source?: UnderlyingSource<R>, strategy?: { highWaterMark?: number });
  static from<R>(iterable: Iterable<R> | AsyncIterable<R>): ReadableStream<R>;
  readonly locked: boolean;
  getReader(): ReadableStreamDefaultReader<R>;
  cancel(reason?: unknown): Promise<void>;
  tee(): [ReadableStream<R>, ReadableStream<R>];
  values(options?: { preventCancel?: boolean }): AsyncIterableIterator<R>;
  [Symbol.asyncIterator](): AsyncIterableIterator<R>;
}

// ------------------------------------------------------------------------------- URL

declare class URL {
  constructor(url: string | URL, base?: string | URL);
  static canParse(url: string, base?: string): boolean;
  static parse(url: string, base?: string): URL | null;
  href: string;
  readonly origin: string;
  protocol: string;
  username: string;
  password: string;
  host: string;
  hostname: string;
  port: string;
  pathname: string;
  search: string;
  readonly searchParams: URLSearchParams;
  hash: string;
  toString(): string;
  toJSON(): string;
}

declare class URLSearchParams implements Iterable<[string, string]> {
  constructor(init?: string | [string, string][] | Record<string, string> | URLSearchParams);
  readonly size: number;
  append(name: string, value: string): void;
  delete(name: string, value?: string): void;
  get(name: string): string | null;
  getAll(name: string): string[];
  has(name: string, value?: string): boolean;
  set(name: string, value: string): void;
  sort(): void;
  forEach(callback: (value: string, name: string, params: URLSearchParams) => void, thisArg?: unknown): void;
  entries(): IterableIterator<[string, string]>;
  keys(): IterableIterator<string>;
  values(): IterableIterator<string>;
  [Symbol.iterator](): IterableIterator<[string, string]>;
  toString(): string;
}

// ---------------------------------------------------------------------------- text

declare class TextEncoder {
  readonly encoding: "utf-8";
  encode(input?: string): Uint8Array;
  encodeInto(input: string, destination: Uint8Array): { read: number; written: number };
}

declare class TextDecoder {
  /** Only UTF-8 labels are accepted. */
  constructor(label?: string, options?: { fatal?: boolean; ignoreBOM?: boolean });
  readonly encoding: "utf-8";
  readonly fatal: boolean;
  readonly ignoreBOM: boolean;
  decode(input?: BufferSource, options?: { stream?: boolean }): string;
}

declare function atob(data: string): string;
declare function btoa(data: string): string;

// ----------------------------------------------------------------- crypto, timers, log

declare const crypto: {
  /** Fills an integer typed array (at most 65 536 bytes) with host randomness. */
  getRandomValues<T extends ArrayBufferView>(array: T): T;
  randomUUID(): string;
};

/** Milliseconds since the current request started (at build time: since start-up). */
declare const performance: { now(): number; readonly timeOrigin: number };

declare function setTimeout(callback: (...args: unknown[]) => void, ms?: number, ...args: unknown[]): number;
declare function clearTimeout(id?: number): void;
declare function setInterval(callback: (...args: unknown[]) => void, ms?: number, ...args: unknown[]): number;
declare function clearInterval(id?: number): void;
declare function queueMicrotask(callback: () => void): void;

/** `log`, `info` and `debug` go to stdout, `warn` and `error` to stderr: the server log. */
declare const console: {
  log(...data: unknown[]): void;
  info(...data: unknown[]): void;
  debug(...data: unknown[]): void;
  warn(...data: unknown[]): void;
  error(...data: unknown[]): void;
  trace(...data: unknown[]): void;
  assert(condition: unknown, ...data: unknown[]): void;
  dir(item: unknown): void;
  count(label?: string): void;
  countReset(label?: string): void;
  time(label?: string): void;
  timeEnd(label?: string): void;
  timeLog(label?: string, ...data: unknown[]): void;
};

declare class DOMException extends Error {
  constructor(message?: string, name?: string);
}

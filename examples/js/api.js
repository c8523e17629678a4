// A JSON API as an edge function: `edge build examples/js/api.js`, then serve or deploy
// the component like any other.
//
//   GET  /api/books?author=…&sort=year&limit=2   list, filtered, sorted, paginated
//   GET  /api/books/:id                           one book, 404 as JSON
//   POST /api/books                               validate a new book: 201 or 422
//
// The catalogue and its indexes are built at top level, so they are part of the snapshot
// `edge build` takes: no request pays for them. Each request runs in a fresh instance, so
// a POST validates and answers but cannot change what the next request sees.

const books = [
  { id: 1, title: "The Left Hand of Darkness", author: "Ursula K. Le Guin", year: 1969 },
  { id: 2, title: "A Wizard of Earthsea", author: "Ursula K. Le Guin", year: 1968 },
  { id: 3, title: "Neuromancer", author: "William Gibson", year: 1984 },
  { id: 4, title: "Kindred", author: "Octavia E. Butler", year: 1979 },
  { id: 5, title: "Parable of the Sower", author: "Octavia E. Butler", year: 1993 },
  { id: 6, title: "Solaris", author: "Stanisław Lem", year: 1961 },
  { id: 7, title: "The Dispossessed", author: "Ursula K. Le Guin", year: 1974 },
];
const byId = new Map(books.map((book) => [book.id, book]));
const SORTS = { year: (a, b) => a.year - b.year, title: (a, b) => a.title.localeCompare(b.title), id: (a, b) => a.id - b.id };

const json = (data, status = 200, headers = {}) =>
  Response.json(data, { status, headers: { "cache-control": "no-store", ...headers } });
const problem = (status, title, detail) =>
  Response.json({ status, title, detail }, { status, headers: { "content-type": "application/problem+json" } });

function list(url) {
  const params = url.searchParams;
  let result = books;
  const author = params.get("author");
  if (author) result = result.filter((b) => b.author.toLowerCase().includes(author.toLowerCase()));
  const sort = params.get("sort") ?? "id";
  if (!SORTS[sort]) return problem(400, "Bad sort", `sort must be one of ${Object.keys(SORTS).join(", ")}`);
  result = [...result].sort(SORTS[sort]);
  const limit = Number(params.get("limit") ?? 50);
  const offset = Number(params.get("offset") ?? 0);
  if (!Number.isInteger(limit) || limit < 1 || !Number.isInteger(offset) || offset < 0)
    return problem(400, "Bad page", "limit must be a positive integer and offset a non-negative one");
  return json({ total: result.length, offset, items: result.slice(offset, offset + limit) });
}

async function create(request) {
  if (!(request.headers.get("content-type") ?? "").startsWith("application/json"))
    return problem(415, "Unsupported media type", "send application/json");
  let book;
  try {
    book = await request.json();
  } catch (e) {
    return problem(400, "Malformed JSON", e.message);
  }
  const errors = [];
  if (typeof book?.title !== "string" || book.title.trim() === "") errors.push("title: a non-empty string");
  if (typeof book?.author !== "string" || book.author.trim() === "") errors.push("author: a non-empty string");
  if (!Number.isInteger(book?.year) || book.year < 0 || book.year > new Date().getUTCFullYear())
    errors.push("year: an integer, not in the future");
  if (errors.length) return Response.json({ status: 422, title: "Invalid book", errors }, { status: 422 });
  const created = { id: books.length + 1, title: book.title.trim(), author: book.author.trim(), year: book.year };
  return json(created, 201, { location: `/api/books/${created.id}` });
}

export default {
  async fetch(request) {
    const url = new URL(request.url);
    const path = url.pathname.replace(/\/+$/, "");
    if (path === "/api/books") {
      if (request.method === "GET" || request.method === "HEAD") return list(url);
      if (request.method === "POST") return create(request);
      return problem(405, "Method not allowed", `${request.method} /api/books`);
    }
    const match = /^\/api\/books\/(\d+)$/.exec(path);
    if (match) {
      const book = byId.get(Number(match[1]));
      return book ? json(book) : problem(404, "Not found", `no book ${match[1]}`);
    }
    return problem(404, "Not found", `no route ${url.pathname}`);
  },
};

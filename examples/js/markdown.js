// Markdown to HTML as an edge function: the JavaScript counterpart of the `markdown`
// example (examples/apps/src/markdown.rs). `POST` a document to render it; `GET` renders
// a built-in sample. The renderer handles the CommonMark core a README uses: ATX headings,
// paragraphs, emphasis and strong, inline code, fenced code blocks, links, images, block
// quotes, ordered and unordered lists, and thematic breaks. Everything here, the regexes
// included, is compiled at build time.

const SAMPLE = `# edge

A *multitenant* WebAssembly edge-function server: **every request** runs in a fresh
instance. See [the README](https://example.com/edge) for \`edge serve\`.

## Why

> Isolation per request, at the cost of an instantiation: about 10 µs.

1. Build an app for \`wasm32-wasip2\`, or write it in JavaScript.
2. Deploy it: \`edge deploy app.wasm\`.
3. Measure it with loadrig.

- fresh instance per request
- memory and time limits
- hot deploys with rollback

\`\`\`sh
edge build app.js -o app.wasm
edge deploy app.wasm
\`\`\`

---

![logo](/logo.svg) Made with care.
`;

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" };
const escape = (text) => text.replace(/[&<>"]/g, (c) => ESCAPES[c]);

function inline(text) {
  const codes = [];
  // Code spans first, so nothing inside them is interpreted.
  text = text.replace(/`([^`]+)`/g, (_, code) => `\u0000${codes.push(escape(code)) - 1}\u0000`);
  text = escape(text)
    .replace(/!\[([^\]]*)\]\(([^)\s]+)\)/g, '<img src="$2" alt="$1">')
    .replace(/\[([^\]]+)\]\(([^)\s]+)\)/g, '<a href="$2">$1</a>')
    .replace(/\*\*([^*]+)\*\*|__([^_]+)__/g, (_, a, b) => `<strong>${a ?? b}</strong>`)
    .replace(/\*([^*]+)\*|\b_([^_]+)_\b/g, (_, a, b) => `<em>${a ?? b}</em>`);
  return text.replace(/\u0000(\d+)\u0000/g, (_, i) => `<code>${codes[i]}</code>`);
}

export function render(markdown) {
  const lines = markdown.replace(/\r\n?/g, "\n").split("\n");
  const out = [];
  let paragraph = [];
  let list = null;
  const flush = () => {
    if (paragraph.length) out.push(`<p>${inline(paragraph.join("\n"))}</p>`);
    paragraph = [];
  };
  const closeList = () => {
    if (list) out.push(`</${list}>`);
    list = null;
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    let m;
    if ((m = /^(```|~~~)\s*([\w-]*)/.exec(line))) {
      flush();
      closeList();
      const fence = m[1];
      const code = [];
      while (++i < lines.length && !lines[i].startsWith(fence)) code.push(lines[i]);
      const lang = m[2] ? ` class="language-${escape(m[2])}"` : "";
      out.push(`<pre><code${lang}>${escape(code.join("\n"))}\n</code></pre>`);
    } else if ((m = /^(#{1,6})\s+(.*?)\s*#*$/.exec(line))) {
      flush();
      closeList();
      out.push(`<h${m[1].length}>${inline(m[2])}</h${m[1].length}>`);
    } else if (/^\s*([-*_])(\s*\1){2,}\s*$/.test(line)) {
      flush();
      closeList();
      out.push("<hr>");
    } else if ((m = /^>\s?(.*)$/.exec(line))) {
      flush();
      closeList();
      const quote = [m[1]];
      while (i + 1 < lines.length && (m = /^>\s?(.*)$/.exec(lines[i + 1]))) quote.push(m[1]), i++;
      out.push(`<blockquote>\n${render(quote.join("\n"))}</blockquote>`);
    } else if ((m = /^\s*(?:([-*+])|(\d+)[.)])\s+(.*)$/.exec(line))) {
      flush();
      const kind = m[1] ? "ul" : "ol";
      if (list !== kind) {
        closeList();
        out.push(kind === "ol" && m[2] !== "1" ? `<ol start="${Number(m[2])}">` : `<${kind}>`);
        list = kind;
      }
      out.push(`<li>${inline(m[3])}</li>`);
    } else if (line.trim() === "") {
      flush();
      closeList();
    } else {
      closeList();
      paragraph.push(line.trim());
    }
  }
  flush();
  closeList();
  return `${out.join("\n")}\n`;
}

const PAGE_HEAD = '<!doctype html><html><head><meta charset="utf-8"><title>markdown</title></head><body>\n';
const PAGE_TAIL = "</body></html>\n";
const HTML = { "content-type": "text/html; charset=utf-8" };

export default {
  async fetch(request) {
    if (request.method === "GET" || request.method === "HEAD")
      return new Response(PAGE_HEAD + render(SAMPLE) + PAGE_TAIL, { headers: HTML });
    if (request.method === "POST") {
      const document = await request.text();
      if (document.length > 1 << 20) return new Response("document over 1 MiB\n", { status: 413 });
      return new Response(PAGE_HEAD + render(document) + PAGE_TAIL, { headers: HTML });
    }
    return new Response("use GET or POST\n", { status: 405, headers: { allow: "GET, HEAD, POST" } });
  },
};

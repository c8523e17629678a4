// Opens an HTML report in headless Chromium (Debian's `chromium`, driven by puppeteer-core),
// screenshots the whole page, and prints what a reader would see as JSON: every chart's
// caption and how many of its marks (polylines with points, rects, paths) were laid out
// with a non-empty box, plus every console message and page error.
//
//   node tests/report/render.mjs REPORT.html SHOT.png
//
// Run with NODE_PATH=target/npm/node_modules (tests/run.sh installs puppeteer-core there).
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import path from "node:path";

const require = createRequire(path.resolve(process.env.NODE_PATH ?? ".", "x.js"));
const puppeteer = require("puppeteer-core");

const [report, shot] = process.argv.slice(2);
if (!report || !shot) {
  console.error("usage: node render.mjs REPORT.html SHOT.png");
  process.exit(2);
}
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage();
  const console_ = [];
  const errors = [];
  page.on("console", (m) => console_.push({ type: m.type(), text: m.text() }));
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("requestfailed", (r) => errors.push(`request failed: ${r.url()}`));
  await page.setViewport({ width: 1000, height: 800 });
  await page.goto(pathToFileURL(path.resolve(report)).href, { waitUntil: "load" });
  const charts = await page.evaluate(() =>
    [...document.querySelectorAll("figure")].map((f) => {
      const svg = f.querySelector("svg");
      const drawn = (el) => {
        const b = el.getBBox();
        return b.width > 0 || b.height > 0;
      };
      const lines = svg ? [...svg.querySelectorAll("polyline")] : [];
      return {
        caption: f.querySelector("figcaption")?.textContent ?? "",
        width: svg?.getBoundingClientRect().width ?? 0,
        // A series drawn with at least two points and a visible extent.
        series: lines.filter((l) => l.points.numberOfItems >= 2 && drawn(l)).length,
        empty_series: lines.filter((l) => l.points.numberOfItems < 2).length,
        bars: svg ? [...svg.querySelectorAll("rect")].filter(drawn).length : 0,
      };
    }),
  );
  const title = await page.title();
  const tables = await page.evaluate(() => document.querySelectorAll("table tr").length);
  await page.screenshot({ path: shot, fullPage: true });
  console.log(JSON.stringify({ title, charts, tables, console: console_, errors }));
} finally {
  await browser.close();
}

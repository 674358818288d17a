#!/usr/bin/env node
// Opens a page written by `mturk-exclusion report` in a real headless
// Chromium, from its file:// URL, and checks that
//   renders        it loads, has its title and its sections (the four
//                  every report has, or --sections), and does not overflow
//                  the viewport sideways
//   charts         each chart is an inline SVG with a visible size and bars
//                  with counts (--charts lists the ids that must have data)
//   no-network     the browser made exactly one request: the file:// page
//                  itself (every request is recorded; anything else fails,
//                  and is aborted)
//   no-console     no console error and no Content-Security-Policy violation
//   forbidden      (with --forbid) none of the given strings is in the
//                  rendered text or the markup (worker ids)
// With --screenshot PATH it also saves a screenshot of the top of the page
// at a fixed viewport (1000 x 1500, scale 1), as docs/report.png is made
// (scripts/report-screenshot.sh).
//
// Usage:
//   node scripts/browser/report-page.mjs --file PATH [--charts ID,ID,...]
//     [--sections ID,ID,...] [--forbid STRING]... [--screenshot PATH] [--timeout-s 60]
// Prints one JSON line per check, then "N passed, N failed"; exits 0 only if
// all passed. Needs scripts/setup.sh (playwright-core in .local/npm, Debian's
// chromium); never downloads a browser.

import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

import { launch } from './chromium.mjs';

const VIEWPORT = { width: 1000, height: 1500 };

function usage(code) {
  const text = `Usage: node scripts/browser/report-page.mjs --file PATH [--charts ID,ID,...]
         [--sections ID,ID,...] [--forbid STRING]... [--screenshot PATH] [--timeout-s N]`;
  (code ? console.error : console.log)(text);
  process.exit(code);
}
const opts = {
  timeoutS: 60,
  forbid: [],
  charts: 'chart-participations,chart-exposure,chart-check,chart-releases',
  sections: 'participations,exposure,check,releases',
};
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') usage(0);
    const value = argv[i + 1];
    if (value === undefined) usage(2);
    i++;
    if (a === '--file') opts.file = value;
    else if (a === '--charts') opts.charts = value;
    else if (a === '--sections') opts.sections = value;
    else if (a === '--forbid') opts.forbid.push(value);
    else if (a === '--screenshot') opts.screenshot = value;
    else if (a === '--timeout-s') opts.timeoutS = Number(value);
    else {
      console.error(`unknown argument: ${a}`);
      usage(2);
    }
  }
  if (!opts.file || !(opts.timeoutS > 0)) usage(2);
}
const charts = opts.charts.split(',').filter(Boolean);

const results = [];
function check(name, ok, detail) {
  results.push({ check: name, ok: Boolean(ok), detail });
  console.log(JSON.stringify(results.at(-1)));
}

async function main() {
  const file = path.resolve(opts.file);
  const url = pathToFileURL(file).href;
  let browser;
  try {
    browser = await launch('report-chromium-', { viewport: VIEWPORT, deviceScaleFactor: 1 });
    const { context } = browser;
    // Every request of every page, recorded; only the page itself may load.
    const requests = [];
    context.on('request', (r) => requests.push(r.url()));
    await context.route('**/*', (route) => {
      const u = route.request().url();
      return u === url ? route.continue() : route.abort();
    });
    const problems = [];
    const page = context.pages()[0] ?? (await context.newPage());
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    const response = await page.goto(url, { waitUntil: 'load', timeout: 15000 });
    // Give anything the page might start (it should start nothing) a moment.
    await page.waitForTimeout(500);

    const facts = await page.evaluate((ids) => {
      const box = (el) => {
        const r = el.getBoundingClientRect();
        return { width: r.width, height: r.height };
      };
      return {
        title: document.title,
        sections: [...document.querySelectorAll('main > section[id]')].map((s) => s.id),
        overflow: document.documentElement.scrollWidth - window.innerWidth,
        svgs: document.querySelectorAll('svg').length,
        charts: ids.map((id) => {
          const svg = document.getElementById(id);
          if (!svg || svg.tagName.toLowerCase() !== 'svg') return { id, found: false };
          const bars = [...svg.querySelectorAll('rect.bar')];
          const drawn = bars.filter((b) => {
            const r = b.getBoundingClientRect();
            return r.width > 0 && r.height > 0;
          });
          return {
            id,
            found: true,
            size: box(svg),
            bars: bars.length,
            drawn: drawn.length,
            total: bars.reduce((n, b) => n + Number(b.dataset.count || 0), 0),
          };
        }),
        text: document.body.innerText,
        html: document.documentElement.outerHTML,
      };
    }, charts);

    check('renders', response && facts.title.startsWith('Participation report') &&
      opts.sections.split(',').every((s) => facts.sections.includes(s)) &&
      facts.overflow <= 0, { title: facts.title, sections: facts.sections, overflow: facts.overflow });
    for (const c of facts.charts) {
      check(`chart ${c.id}`, c.found && c.size.width > 300 && c.size.height > 50 && c.bars > 0 &&
        c.drawn === c.bars && c.total > 0, c);
    }
    check('no-network', requests.length === 1 && requests[0] === url,
      { requests: requests.map((u) => (u === url ? '<the page>' : u)) });
    check('no-console', problems.length === 0, { problems });
    if (opts.forbid.length) {
      const found = opts.forbid.filter((s) => facts.text.includes(s) || facts.html.includes(s));
      check('forbidden', found.length === 0, { forbidden: opts.forbid.length, found: found.length });
    }
    if (opts.screenshot) {
      fs.mkdirSync(path.dirname(path.resolve(opts.screenshot)), { recursive: true });
      await page.screenshot({ path: opts.screenshot, fullPage: false });
      check('screenshot', fs.statSync(opts.screenshot).size > 0,
        { path: opts.screenshot, bytes: fs.statSync(opts.screenshot).size });
    }
  } finally {
    if (browser) await Promise.race([browser.close(), new Promise((r) => setTimeout(r, 5000))]);
  }
}

const timer = setTimeout(() => {
  check('global-timeout', false, `not done after ${opts.timeoutS} s`);
  console.log(`${results.filter((r) => r.ok).length} passed, ${results.filter((r) => !r.ok).length} failed`);
  process.exit(1);
}, opts.timeoutS * 1000);

main()
  .catch((e) => check('run', false, String(e && e.stack || e)))
  .finally(() => {
    clearTimeout(timer);
    const passed = results.filter((r) => r.ok).length;
    const failed = results.length - passed;
    console.log(`${passed} passed, ${failed} failed`);
    process.exit(failed === 0 && passed > 0 ? 0 : 1);
  });

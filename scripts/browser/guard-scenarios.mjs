#!/usr/bin/env node
// Drives web/hit-page.html (and so web/guard.js) in a real Chromium against a
// check endpoint, one fresh page per scenario:
//   new-worker        a worker's first accept: the task shows (answer "new")
//   same-assignment   the same page reloaded: the task still shows
//   repeat-worker     a worker who took part: the return message, no task
//   busy-worker       (with --busy-worker) a worker with another open claim
//   preview           no workerId: not one request to the check origin
//   unreachable       a closed 127.0.0.1 port: the task shows (fails open)
//   timeout           an endpoint that never answers: the task shows after
//                     the page's timeout (4 s), not later
//   garbage           an endpoint answering 200 with non-JSON: the task shows
//   api-explicit-ids  MturkExclusionGuard.check() with ids passed in (oTree)
// and, over all of them, that no console message carries a worker id.
//
// It serves web/ itself on an ephemeral 127.0.0.1 port, so the page's origin
// differs from the endpoint's and CORS is really exercised. It fills the
// page's {{CHECK_URL}} placeholder when serving it, as a lab (or
// `mturk-exclusion guard`) does before uploading the page.
//
// Usage:
//   node scripts/browser/guard-scenarios.mjs --check-url URL --new-worker ID \
//     --repeat-worker ID --hit-id ID [--busy-worker ID] [--screenshot DIR] \
//     [--timeout-s 60]
// --new-worker must have no claim and no participation in the ledger (use a
// fresh random id per run); --repeat-worker must have taken part. The
// busy-worker scenario runs after new-worker with a fresh assignment, so
// --busy-worker may be the --new-worker id: its claim from new-worker then
// makes it busy.
// Prints one JSON line per scenario, then "N passed, N failed"; exits 0 only
// if all passed. Needs scripts/setup.sh (playwright-core in .local/npm,
// Debian's chromium); never downloads a browser.

import http from 'node:http';
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';

import { launch, REPO_ROOT } from './chromium.mjs';

const WEB_DIR = path.join(REPO_ROOT, 'web');
const PAGE = 'hit-page.html';
const PREVIEW = 'ASSIGNMENT_ID_NOT_AVAILABLE';
const PAGE_TIMEOUT_MS = 4000; // data-timeout-ms in web/hit-page.html

// --- arguments -------------------------------------------------------------------
function usage(code) {
  const text = `Usage: node scripts/browser/guard-scenarios.mjs --check-url URL --new-worker ID
         --repeat-worker ID --hit-id ID [--busy-worker ID] [--screenshot DIR] [--timeout-s N]`;
  (code ? console.error : console.log)(text);
  process.exit(code);
}
const opts = { timeoutS: 60 };
{
  const argv = process.argv.slice(2);
  const names = {
    '--check-url': 'checkUrl',
    '--new-worker': 'newWorker',
    '--repeat-worker': 'repeatWorker',
    '--busy-worker': 'busyWorker',
    '--hit-id': 'hitId',
    '--screenshot': 'screenshotDir',
    '--timeout-s': 'timeoutS',
  };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '-h' || argv[i] === '--help') usage(0);
    const key = names[argv[i]];
    if (!key || i + 1 >= argv.length) {
      console.error(`bad or incomplete argument: ${argv[i]}`);
      usage(2);
    }
    opts[key] = argv[++i];
  }
  for (const k of ['checkUrl', 'newWorker', 'repeatWorker', 'hitId']) {
    if (!opts[k]) {
      console.error(`missing --${k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())}`);
      usage(2);
    }
  }
  opts.timeoutS = Number(opts.timeoutS);
  if (!(opts.timeoutS > 0)) usage(2);
}
try {
  if (!/^https?:$/.test(new URL(opts.checkUrl).protocol)) throw new Error();
} catch {
  console.error(`--check-url is not an http(s) URL: ${opts.checkUrl}`);
  usage(2);
}
const WORKER_IDS = [opts.newWorker, opts.repeatWorker, opts.busyWorker].filter(Boolean);
// Worker ids stay out of our output too (an error can quote the page's URL).
const redact = (text) => WORKER_IDS.reduce((t, id) => t.split(id).join('<workerId>'), String(text));

// --- cleanup, bounded in time -----------------------------------------------------
const cleanups = [];
let cleaning = null;
function cleanup() {
  cleaning ??= (async () => {
    for (const fn of cleanups.reverse()) {
      try {
        await Promise.race([fn(), new Promise((r) => setTimeout(r, 5000))]);
      } catch {
        /* best effort: the rest must still run */
      }
    }
  })();
  return cleaning;
}
const results = [];
let finished = false; // once set, nothing more is run or printed
function finish(code) {
  if (finished) return cleaning;
  finished = true;
  const passed = results.filter((r) => r.ok).length;
  console.log(`${passed} passed, ${results.length - passed} failed`);
  return cleanup().then(() => process.exit(code));
}
const globalTimer = setTimeout(() => {
  results.push({ scenario: 'global-timeout', ok: false, detail: `not done after ${opts.timeoutS} s` });
  console.log(JSON.stringify(results.at(-1)));
  finish(1);
}, opts.timeoutS * 1000);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => finish(130));

// --- local servers ----------------------------------------------------------------
function listen(server) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server.address().port));
  });
}
function closeServer(server) {
  return new Promise((resolve) => {
    server.closeAllConnections?.();
    server.close(() => resolve());
  });
}

// A port nothing listens on: bind an ephemeral one and close it again.
async function closedPort() {
  const s = net.createServer();
  const port = await listen(s);
  await new Promise((r) => s.close(r));
  return port;
}

// Endpoints of our own, for the fail-open scenarios: one that never answers,
// one that answers 200 with something that is not JSON (CORS allowed, so the
// page really gets to read it).
const hung = new Set();
const badEndpoints = http.createServer((req, res) => {
  if (req.url.startsWith('/hang')) {
    hung.add(res);
    return;
  }
  res.writeHead(200, { 'Content-Type': 'text/html', 'Access-Control-Allow-Origin': '*' });
  res.end('<html>Bad gateway, but with status 200</html>');
});

// web/ over HTTP. The first path segment names the endpoint to fill into
// {{CHECK_URL}}: /real/hit-page.html, /closed/hit-page.html, …
const endpoints = {};
const webFiles = new Set(fs.readdirSync(WEB_DIR));
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8' };
const escapeAttr = (s) => s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
const webServer = http.createServer((req, res) => {
  const { pathname } = new URL(req.url, 'http://127.0.0.1');
  const [, key, file, ...rest] = pathname.split('/');
  // Only files directly in web/, named exactly: no path tricks.
  if (rest.length || !(key in endpoints) || !webFiles.has(file) || !TYPES[path.extname(file)]) {
    res.writeHead(404);
    return res.end('not found');
  }
  let body = fs.readFileSync(path.join(WEB_DIR, file), 'utf8');
  if (file.endsWith('.html')) body = body.split('{{CHECK_URL}}').join(escapeAttr(endpoints[key]));
  res.writeHead(200, { 'Content-Type': TYPES[path.extname(file)], 'Cache-Control': 'no-store' });
  res.end(body);
});

// --- the browser -------------------------------------------------------------------
const randomId = (prefix, n) =>
  (prefix + crypto.randomBytes(n).toString('hex').toUpperCase()).slice(0, n + prefix.length);

// --- scenarios ----------------------------------------------------------------------
async function main() {
  const webPort = await listen(webServer);
  cleanups.push(() => closeServer(webServer));
  const badPort = await listen(badEndpoints);
  cleanups.push(() => {
    for (const res of hung) res.destroy();
    return closeServer(badEndpoints);
  });
  endpoints.real = opts.checkUrl;
  endpoints.closed = `http://127.0.0.1:${await closedPort()}/lambda-url/exclusion-check/`;
  endpoints.hang = `http://127.0.0.1:${badPort}/hang/`;
  endpoints.garbage = `http://127.0.0.1:${badPort}/garbage/`;

  const browser = await launch('guard-chromium-', { viewport: { width: 1000, height: 700 } });
  cleanups.push(() => browser.close());
  const { context } = browser;
  if (opts.screenshotDir) fs.mkdirSync(opts.screenshotDir, { recursive: true });

  const consoleTexts = [];

  // Opens the page as MTurk would, waits for guard.js's own verdict
  // (MturkExclusionGuard.auto), and reports what a worker would see.
  async function visit(name, endpointKey, { workerId, assignmentId, turkSubmitTo = 'https://workersandbox.mturk.com' }) {
    const q = new URLSearchParams({
      assignmentId,
      hitId: opts.hitId,
      turkSubmitTo,
    });
    if (workerId) q.set('workerId', workerId);
    const page = await context.newPage();
    const checkRequests = [];
    page.on('request', (r) => {
      if (new URL(r.url()).origin === new URL(endpoints[endpointKey]).origin) checkRequests.push(r);
    });
    const guardSaid = [];
    page.on('console', (m) => {
      consoleTexts.push({ type: m.type(), text: m.text() });
      if (m.text().startsWith('mturk-exclusion guard: ')) guardSaid.push(m.text().slice(23));
    });
    try {
      const t0 = Date.now();
      await page.goto(`http://127.0.0.1:${webPort}/${endpointKey}/${PAGE}?${q}`, { timeout: 10000 });
      const result = await page.evaluate(() => window.MturkExclusionGuard && window.MturkExclusionGuard.auto);
      const ms = Date.now() - t0;
      const seen = {
        result,
        ms,
        taskVisible: await page.locator('#task').isVisible(),
        messageVisible: await page.locator('#guard-message').isVisible(),
        messageRole: await page.locator('#guard-message').getAttribute('role'),
        messageText: (await page.locator('#guard-message').innerText()).replace(/\s+/g, ' ').trim(),
        formAction: await page.locator('#task-form').getAttribute('action'),
        submitDisabled: await page.locator('#submit').isDisabled(),
        submitRefusedShown: await page.locator('#submit-refused').isVisible(),
        checkRequests,
        guardSaid,
      };
      if (opts.screenshotDir) {
        await page.screenshot({ path: path.join(opts.screenshotDir, `${name}.png`), fullPage: true });
      }
      return seen;
    } finally {
      await page.close();
    }
  }

  async function scenario(name, fn) {
    if (finished) throw new Error('stopped');
    let out;
    try {
      out = await Promise.race([
        fn(),
        new Promise((_, reject) => setTimeout(() => reject(new Error('scenario took over 20 s')), 20000)),
      ]);
    } catch (e) {
      out = { ok: false, detail: String(e && e.message ? e.message.split('\n')[0] : e) };
    }
    if (finished) throw new Error('stopped'); // the global timeout struck meanwhile
    const line = { scenario: name, ok: out.ok, detail: redact(out.detail) };
    results.push(line);
    console.log(JSON.stringify(line));
  }

  // Everything a scenario expects, as a list of [what, holds] pairs; the
  // detail names what failed, or summarises what was seen.
  function verdict(seen, expectations) {
    const failed = expectations.filter(([, holds]) => !holds).map(([what]) => what);
    const r = seen.result || {};
    const summary = `reason=${r.reason} checked=${r.checked} task=${seen.taskVisible ? 'shown' : 'hidden'} message=${
      seen.messageVisible ? 'shown' : 'none'
    } requests=${seen.checkRequests.length} ${seen.ms} ms${seen.guardSaid.length ? `; guard.js: ${seen.guardSaid.join(' | ')}` : ''}`;
    return failed.length ? { ok: false, detail: `expected ${failed.join('; ')} (saw ${summary})` } : { ok: true, detail: summary };
  }

  const taskShown = (seen) => [
    ['the task shown', seen.taskVisible],
    ['no message', !seen.messageVisible],
  ];
  const askedToReturn = (seen, words) => [
    ['the task hidden', !seen.taskVisible],
    ['the message shown', seen.messageVisible],
    ['role="alert" on the message', seen.messageRole === 'alert'],
    [`the message to say "${words}"`, seen.messageText.includes(words)],
    ['the message to say returning costs nothing', /costs you nothing/.test(seen.messageText)],
    ['the message to say nobody will be rejected', /nobody will be rejected/.test(seen.messageText)],
  ];
  const onePlainRequest = (seen) => [
    ['exactly one request to the check origin', seen.checkRequests.length === 1],
    ['a GET', seen.checkRequests[0]?.method() === 'GET'],
    ['no Referer sent (the page URL holds the worker id)', !seen.checkRequests[0]?.headers().referer],
  ];

  const newAssignment = randomId('GUARD', 25);
  await scenario('new-worker', async () => {
    const seen = await visit('new-worker', 'real', { workerId: opts.newWorker, assignmentId: newAssignment });
    return verdict(seen, [
      ['answer "new", checked (CORS let the page read it)', seen.result?.reason === 'new' && seen.result?.checked === true],
      ...onePlainRequest(seen),
      ...taskShown(seen),
    ]);
  });

  // The sample page posts answers to MTurk's own hosts only: a link with a
  // turkSubmitTo of someone else's gets no form action and no submit button.
  await scenario('foreign-turk-submit-to', async () => {
    const seen = await visit('foreign-turk-submit-to', 'real', {
      workerId: opts.newWorker,
      assignmentId: newAssignment,
      turkSubmitTo: 'https://collector.example',
    });
    return verdict(seen, [
      ['no form action', seen.formAction === null],
      ['the submit button disabled', seen.submitDisabled],
      ['the refusal shown', seen.submitRefusedShown],
    ]);
  });

  await scenario('mturk-turk-submit-to', async () => {
    const seen = await visit('mturk-turk-submit-to', 'real', {
      workerId: opts.newWorker,
      assignmentId: newAssignment,
      turkSubmitTo: 'https://www.mturk.com/',
    });
    return verdict(seen, [
      ['the form posts to MTurk', seen.formAction === 'https://www.mturk.com/mturk/externalSubmit'],
      ['the submit button enabled', !seen.submitDisabled],
      ['no refusal', !seen.submitRefusedShown],
    ]);
  });

  await scenario('same-assignment', async () => {
    const seen = await visit('same-assignment', 'real', { workerId: opts.newWorker, assignmentId: newAssignment });
    return verdict(seen, [
      ['answer "same_assignment", eligible', seen.result?.reason === 'same_assignment' && seen.result?.eligible === true],
      ...taskShown(seen),
    ]);
  });

  await scenario('repeat-worker', async () => {
    const seen = await visit('repeat-worker', 'real', {
      workerId: opts.repeatWorker,
      assignmentId: randomId('GUARD', 25),
    });
    return verdict(seen, [
      ['answer "took_part", not eligible', seen.result?.reason === 'took_part' && seen.result?.eligible === false],
      ...onePlainRequest(seen),
      ...askedToReturn(seen, 'already taken part in one of our studies'),
    ]);
  });

  if (opts.busyWorker) {
    await scenario('busy-worker', async () => {
      const seen = await visit('busy-worker', 'real', {
        workerId: opts.busyWorker,
        assignmentId: randomId('GUARD', 25),
      });
      return verdict(seen, [
        ['answer "busy", not eligible', seen.result?.reason === 'busy' && seen.result?.eligible === false],
        ...askedToReturn(seen, 'another of our HITs open'),
      ]);
    });
  }

  await scenario('preview', async () => {
    const seen = await visit('preview', 'real', { workerId: null, assignmentId: PREVIEW });
    // Give a stray request time to show up before counting.
    await new Promise((r) => setTimeout(r, 500));
    return verdict(seen, [
      ['no request to the check origin', seen.checkRequests.length === 0],
      ['reason "preview", unchecked', seen.result?.reason === 'preview' && seen.result?.checked === false],
      ...taskShown(seen),
    ]);
  });

  await scenario('unreachable', async () => {
    const seen = await visit('unreachable', 'closed', {
      workerId: opts.newWorker,
      assignmentId: randomId('GUARD', 25),
    });
    return verdict(seen, [
      ['failed open (reason "unavailable", unchecked)', seen.result?.reason === 'unavailable' && seen.result?.checked === false],
      ['a request was attempted', seen.checkRequests.length === 1],
      ...taskShown(seen),
    ]);
  });

  await scenario('timeout', async () => {
    const seen = await visit('timeout', 'hang', { workerId: opts.newWorker, assignmentId: randomId('GUARD', 25) });
    return verdict(seen, [
      ['failed open (reason "unavailable")', seen.result?.reason === 'unavailable' && seen.result?.checked === false],
      [`an answer near the page's ${PAGE_TIMEOUT_MS} ms timeout`, seen.ms >= PAGE_TIMEOUT_MS - 200 && seen.ms < PAGE_TIMEOUT_MS + 3000],
      ...taskShown(seen),
    ]);
  });

  await scenario('garbage', async () => {
    const seen = await visit('garbage', 'garbage', { workerId: opts.newWorker, assignmentId: randomId('GUARD', 25) });
    return verdict(seen, [
      ['failed open (reason "unavailable")', seen.result?.reason === 'unavailable' && seen.result?.checked === false],
      ...taskShown(seen),
    ]);
  });

  // The oTree way: a page whose URL has no MTurk ids passes them to check().
  await scenario('api-explicit-ids', async () => {
    const page = await context.newPage();
    page.on('console', (m) => consoleTexts.push({ type: m.type(), text: m.text() }));
    try {
      await page.goto(`http://127.0.0.1:${webPort}/real/${PAGE}`, { timeout: 10000 });
      const result = await page.evaluate(
        (a) => window.MturkExclusionGuard.check(a),
        { endpoint: endpoints.real, workerId: opts.repeatWorker, assignmentId: randomId('GUARD', 25), hitId: opts.hitId },
      );
      const ok = result.reason === 'took_part' && result.eligible === false && result.checked === true;
      return { ok, detail: `${ok ? '' : 'expected took_part, checked; '}got ${JSON.stringify(result)}` };
    } finally {
      await page.close();
    }
  });

  await scenario('no-worker-id-in-console', async () => {
    // guard.js must never log an id. (Chromium's own errors quote the URL,
    // e.g. a CORS refusal: those show up here too, named as such.)
    const leaks = consoleTexts.filter((m) => WORKER_IDS.some((id) => m.text.includes(id)));
    return leaks.length
      ? {
          ok: false,
          detail: `${leaks.length} of ${consoleTexts.length} console message(s) carry a worker id: ${leaks
            .map((m) => `[${m.type}] ${m.text.slice(0, 100)}`)
            .join(' | ')}`,
        }
      : { ok: true, detail: `${consoleTexts.length} console message(s), none with a worker id` };
  });
}

main()
  .then(() => {
    clearTimeout(globalTimer);
    return finish(results.length && results.every((r) => r.ok) ? 0 : 1);
  })
  .catch((e) => {
    clearTimeout(globalTimer);
    if (finished) return cleaning;
    results.push({ scenario: 'setup', ok: false, detail: String(e && e.message ? e.message.split('\n')[0] : e) });
    console.log(JSON.stringify(results.at(-1)));
    return finish(1);
  });

#!/usr/bin/env node
// DEVELOPMENT AID ONLY — not the test, not the endpoint.
//
// A stand-in for the Rust check endpoint (Lambda `exclusion-check` behind a
// Function URL), so that web/guard.js and scripts/browser/guard-scenarios.mjs
// can be worked on before, or without building, the real thing. CI runs the
// scenarios against the real Rust endpoint, never against this.
//
// It answers per the contract, on 127.0.0.1 only, and adds the CORS headers
// the way the Function URL's Cors block would (GET, any origin, no
// credentials). The real function must NOT set them itself: Lambda adds them.
//
//   GET /lambda-url/exclusion-check/?workerId=…&assignmentId=…&hitId=…
//     200 {"eligible":bool,"reason":"preview"|"new"|"same_assignment"|"busy"|"took_part"}
//     400 {"error":"…"} bad or missing ids; 405 other methods;
//     503 with --down (ledger unreachable)
//
// Usage: node scripts/browser/dev-check-server.mjs [--port N] [--took-part ID]...
//          [--busy ID]... [--delay-ms N] [--down] [--max-seconds N]
// Prints "check-url http://127.0.0.1:PORT/lambda-url/exclusion-check/" on
// stdout when ready; stops on SIGINT/SIGTERM or after --max-seconds (600).
// Claims are kept in memory: the first accept of a worker claims them for
// that assignment; another assignment of the same worker is then "busy".

import http from 'node:http';

const args = process.argv.slice(2);
const opts = { port: 0, tookPart: new Set(), busy: new Set(), delayMs: 0, down: false, maxSeconds: 600 };
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  const val = () => {
    if (i + 1 >= args.length) throw new Error(`${a} needs a value`);
    return args[++i];
  };
  if (a === '--port') opts.port = Number(val());
  else if (a === '--took-part') opts.tookPart.add(val());
  else if (a === '--busy') opts.busy.add(val());
  else if (a === '--delay-ms') opts.delayMs = Number(val());
  else if (a === '--down') opts.down = true;
  else if (a === '--max-seconds') opts.maxSeconds = Number(val());
  else {
    console.error(`unknown argument: ${a}`);
    process.exit(2);
  }
}

const PATH = '/lambda-url/exclusion-check/';
const PREVIEW = 'ASSIGNMENT_ID_NOT_AVAILABLE';
// Same rule as the project: non-empty ASCII alphanumerics, at most 255 bytes.
const ID = /^[A-Za-z0-9]{1,255}$/;
const claims = new Map(); // workerId → assignmentId
for (const w of opts.busy) claims.set(w, 'SOMEOTHERASSIGNMENT');

// What the Function URL's Cors block adds (AllowOrigins ["*"], AllowMethods
// ["GET"], no credentials). Preflight is answered here too, as Lambda does.
function cors(res) {
  res.setHeader('Access-Control-Allow-Origin', '*');
  res.setHeader('Vary', 'Origin');
}

function send(res, status, body) {
  cors(res);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
  res.end(JSON.stringify(body));
}

function decide(q) {
  const workerId = q.get('workerId');
  const assignmentId = q.get('assignmentId');
  const hitId = q.get('hitId');
  if (!ID.test(hitId || '')) return [400, { error: 'hitId must be 1-255 ASCII letters or digits' }];
  if (assignmentId === PREVIEW) return [200, { eligible: true, reason: 'preview' }];
  if (!ID.test(assignmentId || '')) return [400, { error: 'assignmentId must be 1-255 ASCII letters or digits' }];
  if (!ID.test(workerId || '')) return [400, { error: 'workerId must be 1-255 ASCII letters or digits' }];
  if (opts.down) return [503, { error: 'ledger unreachable' }];
  if (opts.tookPart.has(workerId)) return [200, { eligible: false, reason: 'took_part' }];
  const held = claims.get(workerId);
  if (held === assignmentId) return [200, { eligible: true, reason: 'same_assignment' }];
  if (held !== undefined) return [200, { eligible: false, reason: 'busy' }];
  claims.set(workerId, assignmentId);
  return [200, { eligible: true, reason: 'new' }];
}

let served = 0;
const server = http.createServer((req, res) => {
  served++;
  const url = new URL(req.url, 'http://127.0.0.1');
  if (url.pathname !== PATH && url.pathname !== PATH.slice(0, -1)) {
    return send(res, 404, { error: 'not found' });
  }
  if (req.method === 'OPTIONS') {
    cors(res);
    res.setHeader('Access-Control-Allow-Methods', 'GET');
    res.setHeader('Access-Control-Max-Age', '300');
    res.writeHead(204);
    return res.end();
  }
  if (req.method !== 'GET') return send(res, 405, { error: 'method not allowed' });
  const [status, body] = decide(url.searchParams);
  // Log the outcome only: worker ids are personal data.
  console.error(`dev-check-server: ${status} ${body.reason || body.error}`);
  setTimeout(() => send(res, status, body), opts.delayMs);
});

function stop() {
  console.error(`dev-check-server: stopping after ${served} request(s)`);
  server.close();
  server.closeAllConnections?.();
  process.exit(0);
}
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
setTimeout(stop, opts.maxSeconds * 1000).unref();

server.listen(opts.port, '127.0.0.1', () => {
  console.log(`check-url http://127.0.0.1:${server.address().port}${PATH}`);
});

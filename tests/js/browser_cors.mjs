// Drive the system Chromium (headless) through one page and report what the
// page saw, for tests/test_browser.py.
//
//   node browser_cors.mjs --chromium /usr/bin/chromium --profile DIR
//        [--map HOST]... [--timeout SECONDS] URL
//
// Opens URL in a fresh profile (DIR must be an empty directory the caller
// owns and removes), waits until the page sets `window.__corsResult`, and
// prints ONE JSON line on stdout:
//
//   {"ok": true, "result": <what the page set>, "network": [...],
//    "console": [...], "pageErrors": [...], "ms": N}
//
// `network` lists the requests Chromium made, from the DevTools protocol
// (CORS preflights included, as type "Preflight", with the reason Chromium
// gives when it blocks one: `corsError`).  `--map HOST` makes Chromium
// resolve HOST to 127.0.0.1 (so a page can have a non-loopback origin while
// every socket stays on loopback).  On any failure (launch, navigation,
// timeout) it prints {"ok": false, "error": ...} with the same diagnostics
// and exits 1.  The whole run is bounded by --timeout (default 60 s); when
// it passes the script exits, and Playwright kills the browser's process
// group on the way out.
//
// playwright-core (not `playwright`) is used: it downloads no browser of its
// own; it drives the executable it is given.

import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

function parseArgs(argv) {
  const opts = { chromium: '/usr/bin/chromium', profile: null, map: [], timeout: 60, url: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--chromium') opts.chromium = value();
    else if (a === '--profile') opts.profile = value();
    else if (a === '--map') opts.map.push(value());
    else if (a === '--timeout') opts.timeout = Number(value());
    else if (a.startsWith('--')) throw new Error(`unknown option ${a}`);
    else if (opts.url === null) opts.url = a;
    else throw new Error(`unexpected argument ${a}`);
  }
  if (!opts.url) throw new Error('no URL given');
  if (!opts.profile) throw new Error('--profile DIR is required (a fresh empty directory)');
  if (!(opts.timeout > 0)) throw new Error('--timeout must be a positive number of seconds');
  return opts;
}

// Chromium's own switches.  This machine (and CI) has no outside network:
// without the --disable-* switches Chromium keeps trying to reach Google
// services (component updates, sync, variations, ...) and misbehaves.
// --no-proxy-server: ignore any http_proxy in the environment, so that the
// mapped host name is connected to directly.
function chromiumArgs(map) {
  const args = [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--no-proxy-server',
  ];
  if (map.length) {
    args.push('--host-resolver-rules=' + map.map((h) => `MAP ${h} 127.0.0.1`).join(','));
  }
  return args;
}

const started = Date.now();
const report = { ok: false, network: [], console: [], pageErrors: [] };
let printed = false;

function finish(extra, code) {
  if (printed) return;
  printed = true;
  Object.assign(report, extra, { ms: Date.now() - started });
  process.stdout.write(JSON.stringify(report) + '\n');
  process.exitCode = code;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const js = process.env.MCPBRIDGE_JS || join(import.meta.dirname, 'node_modules');
  const { chromium } = await import(pathToFileURL(join(js, 'playwright-core', 'index.mjs')).href);

  const timer = setTimeout(() => {
    finish({ error: `timed out after ${opts.timeout} s` }, 1);
    process.exit(1); // Playwright's exit hook kills the browser
  }, opts.timeout * 1000);

  const ms = opts.timeout * 1000;
  const context = await chromium.launchPersistentContext(opts.profile, {
    executablePath: opts.chromium,
    headless: true,
    args: chromiumArgs(opts.map),
    timeout: ms,
  });
  try {
    const page = context.pages()[0] || (await context.newPage());
    page.on('console', (m) => report.console.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => report.pageErrors.push(String(e)));

    // Every request as Chromium's network stack saw it, preflights included.
    const byId = new Map();
    const cdp = await context.newCDPSession(page);
    cdp.on('Network.requestWillBeSent', (e) => {
      // Origin is in these headers for preflights only (Chromium adds it to
      // the other requests later, below what this event shows).
      const entry = { method: e.request.method, url: e.request.url, type: e.type || null };
      const origin = e.request.headers.Origin || e.request.headers.origin;
      if (origin) entry.origin = origin;
      byId.set(`${e.requestId}/${e.type}`, entry);
      if (!byId.has(e.requestId)) byId.set(e.requestId, entry);
      report.network.push(entry);
    });
    cdp.on('Network.responseReceived', (e) => {
      const entry = byId.get(`${e.requestId}/${e.type}`) || byId.get(e.requestId);
      if (entry) {
        entry.status = e.response.status;
        entry.headers = e.response.headers;
      }
    });
    cdp.on('Network.loadingFailed', (e) => {
      const entry = byId.get(`${e.requestId}/${e.type}`) || byId.get(e.requestId);
      const failure = { errorText: e.errorText, corsError: e.corsErrorStatus?.corsError || null,
                        blockedReason: e.blockedReason || null };
      if (entry) Object.assign(entry, { failed: failure });
      else report.network.push({ requestId: e.requestId, failed: failure });
    });
    await cdp.send('Network.enable');

    await page.goto(opts.url, { timeout: ms, waitUntil: 'load' });
    await page.waitForFunction(() => window.__corsResult !== undefined, null,
                               { timeout: ms, polling: 100 });
    const result = await page.evaluate(() => window.__corsResult);
    finish({ ok: true, result }, 0);
  } finally {
    clearTimeout(timer);
    await context.close();
  }
}

main().catch((e) => finish({ error: String(e && e.stack || e) }, 1));

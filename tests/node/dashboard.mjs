// End-to-end check of the web dashboard (/ui): a real `stratus serve`, a receiver on 127.0.0.1,
// and Debian's Chromium driven headless by playwright-core. It opens the dashboard, sees a queue
// with tasks, pauses it, runs a task, retries a failed one and resumes the queue, checking each
// step in the page and through the REST API, and saves the screenshots of docs/img/.
//
//   node dashboard.mjs
//
// Environment: STRATUS_BIN (server binary), CHROMIUM (browser binary; default: chromium on PATH).
// Prints one line per check and ends with "dashboard checks: N passed, M failed"; exit 0 only
// when every check passed.

import {execFileSync, spawn} from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {chromium} from 'playwright-core';

import {REPO_ROOT, Receiver, StratusServer, freePort, poll, sleep} from './lib.mjs';

const IMG = path.join(REPO_ROOT, 'docs', 'img');
const P = 'projects/local/locations/local';
const UI_TIMEOUT_MS = 15_000;

let passed = 0;
let failed = 0;
async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok    ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL  ${name}: ${String(e.message || e).split('\n')[0]}`);
    if (process.env.VERBOSE) console.log(e);
  }
}
function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

function chromiumPath() {
  if (process.env.CHROMIUM) return process.env.CHROMIUM;
  for (const name of ['chromium', 'chromium-browser']) {
    try {
      return execFileSync('sh', ['-c', `command -v ${name}`]).toString().trim();
    } catch {
      /* next */
    }
  }
  throw new Error('no chromium on PATH (Debian: apt-get install chromium) and CHROMIUM unset');
}

const server = new StratusServer('dashboard');
// /fail answers 500 until `healed`; everything else 200.
let healed = false;
const receiver = new Receiver((rec) => ({status: rec.path.startsWith('/fail') && !healed ? 500 : 200}));
let browser;

async function rest(method, p, body) {
  const r = await fetch(`${server.url}${p}`, {
    method,
    headers: body === undefined ? {} : {'content-type': 'application/json'},
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(`${method} ${p}: ${r.status} ${JSON.stringify(json)}`);
  return json;
}

const hideToast = (pg) => pg.evaluate(() => (document.getElementById('toast').hidden = true));
const inSeconds = (s) => new Date(Date.now() + s * 1000).toISOString();
const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64');

async function createTask(queue, id, {route = `/${queue}`, delayS = 0, payload = {id}} = {}) {
  const task = {
    name: `${P}/queues/${queue}/tasks/${id}`,
    httpRequest: {
      url: `${receiver.url}${route}`,
      httpMethod: 'POST',
      headers: {'Content-Type': 'application/json'},
      body: b64(payload),
    },
  };
  if (delayS) task.scheduleTime = inSeconds(delayS);
  return rest('POST', `/v2/${P}/queues/${queue}/tasks`, {task});
}

/**
 * A second server with one admin token for project `local` (written by `stratus tokens
 * create --config`) and a queue `secured`. Returns {url, token, stop}.
 */
async function tokenServer() {
  const bin = (() => {
    const raw = process.env.STRATUS_BIN || 'target/debug/stratus';
    return path.isAbsolute(raw) ? raw : path.join(REPO_ROOT, raw);
  })();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'stratus-node-dashboard-auth-'));
  const cfg = path.join(tmp, 'stratus.toml');
  const token = execFileSync(bin, ['tokens', 'create', '--project', 'local', '--role', 'admin', '--name', 'ui', '--config', cfg], {
    stdio: ['ignore', 'pipe', 'ignore'],
  })
    .toString()
    .trim();
  const port = await freePort();
  const log = fs.openSync(path.join(tmp, 'server.log'), 'w');
  const proc = spawn(bin, ['serve', '--listen', `127.0.0.1:${port}`, '--data-dir', path.join(tmp, 'data'), '--config', cfg, '--no-dispatch'], {
    stdio: ['ignore', log, log],
  });
  fs.closeSync(log);
  const kill = () => proc.exitCode === null && proc.signalCode === null && proc.kill('SIGKILL');
  process.on('exit', kill);
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    kill();
    fs.rmSync(tmp, {recursive: true, force: true});
  };
  try {
    await poll(async () => {
      try {
        return (await fetch(`${url}/healthz`)).status === 200;
      } catch {
        await sleep(100);
        return false;
      }
    }, 'the token server to start', {timeoutMs: 20_000});
    const r = await fetch(`${url}/v2/${P}/queues`, {
      method: 'POST',
      headers: {'content-type': 'application/json', authorization: `Bearer ${token}`},
      body: JSON.stringify({name: `${P}/queues/secured`}),
    });
    assert(r.status === 200, `create queue with token: ${r.status}`);
    const anon = await fetch(`${url}/v2/${P}/queues`);
    assert(anon.status === 401, `without token: ${anon.status}`);
  } catch (e) {
    await stop();
    throw e;
  }
  return {url, token, stop};
}

const taskStatus = (queue, id) => rest('GET', `/stratus/v1/${P}/queues/${queue}/tasks/${id}`);
const taskNameHeader = (rec) => rec.headers['x-cloudtasks-taskname'];

try {
  await server.start();
  await receiver.start();

  // Three queues; "orders" retries twice, quickly.
  await rest('POST', `/v2/${P}/queues`, {
    name: `${P}/queues/orders`,
    rateLimits: {maxDispatchesPerSecond: 50, maxConcurrentDispatches: 10},
    retryConfig: {maxAttempts: 2, minBackoff: '0.1s', maxBackoff: '0.2s'},
  });
  await rest('POST', `/v2/${P}/queues`, {name: `${P}/queues/emails`});
  await rest('POST', `/v2/${P}/queues`, {name: `${P}/queues/reports`});
  for (const [i, id] of ['order-1001', 'order-1002', 'order-1003'].entries()) {
    await createTask('orders', id, {route: '/orders/charge', payload: {order: 1001 + i, amount: 25 + i}});
  }
  await createTask('orders', 'invoice-1042', {route: '/fail/invoice', payload: {invoice: 1042, customer: 'acme'}});
  for (const [i, id] of ['order-2001', 'order-2002', 'order-2003', 'order-2004'].entries()) {
    await createTask('orders', id, {route: '/orders/charge', delayS: 3600 * (i + 1), payload: {order: 2001 + i}});
  }
  for (const id of ['welcome-7', 'welcome-8', 'digest-3']) {
    await createTask('emails', id, {route: '/emails/send', delayS: 1800});
  }
  await rest('POST', `/v2/${P}/queues/reports:pause`, {});
  for (const id of ['daily-sales', 'weekly-stock']) await createTask('reports', id, {route: '/reports/build'});
  await poll(async () => {
    const f = await rest('GET', `/stratus/v1/${P}/queues/orders/failedTasks`);
    return f.tasks.some((t) => t.task.name.endsWith('/invoice-1042'));
  }, 'invoice-1042 to fail');
  await receiver.waitFor(3, {filter: (r) => r.path === '/orders/charge'});

  browser = await chromium.launch({executablePath: chromiumPath(), headless: true, args: ['--no-sandbox']});
  const page = await browser.newPage({viewport: {width: 1280, height: 800}});
  page.setDefaultTimeout(UI_TIMEOUT_MS);
  const pageErrors = [];
  const foreign = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  // Console errors include Content-Security-Policy violations.
  page.on('console', (m) => m.type() === 'error' && pageErrors.push(m.text()));
  page.on('request', (req) => {
    if (!req.url().startsWith(server.url) && !req.url().startsWith('data:')) foreign.push(req.url());
  });
  fs.mkdirSync(IMG, {recursive: true});

  await check('GET /ui serves the embedded page, script and stylesheet', async () => {
    for (const [p, type] of [['/ui', 'text/html'], ['/ui/app.js', 'text/javascript'], ['/ui/style.css', 'text/css']]) {
      const r = await fetch(`${server.url}${p}`);
      assert(r.status === 200, `${p}: ${r.status}`);
      assert((r.headers.get('content-type') || '').startsWith(type), `${p}: content-type ${r.headers.get('content-type')}`);
    }
  });

  await check('queue list shows the queues with depth, failures, state and last-minute rates', async () => {
    await page.goto(`${server.url}/ui`);
    const orders = page.locator('tr[data-queue="orders"]');
    await orders.locator('td.depth', {hasText: /^4$/}).waitFor();
    await orders.locator('td.failed', {hasText: /^1$/}).waitFor();
    await page.locator('tr[data-queue="reports"] .badge', {hasText: 'PAUSED'}).waitFor();
    await page.locator('tr[data-queue="emails"] td.depth', {hasText: /^3$/}).waitFor();
    // The last minute, from the queue statistics: 3 deliveries and the failing task's 2
    // attempts were dispatched; those 2 were errors. The rate is theirs over the window.
    await orders.locator('td.dispatched', {hasText: /^5$/}).waitFor();
    await orders.locator('td.errors', {hasText: /^2$/}).waitFor();
    const shown = (await orders.locator('td.rate').textContent()).trim();
    assert(/^\d+(\.\d)?\/(s|min)$/.test(shown) && !/^0(\.0)?\//.test(shown), `orders dispatch rate shown as ${shown}`);
    const st = await rest('GET', `/stratus/v1/${P}/queueStats`);
    const os = st.queueStats.find((x) => x.queue === `${P}/queues/orders`);
    assert(os && os.dispatches === 5 && os.failed === 2 && os.creates === 8, `orders stats ${JSON.stringify(st)}`);
    await page.locator('tr[data-queue="emails"] td.dispatched', {hasText: /^0$/}).waitFor();
    await hideToast(page);
    // A short viewport: the list of three queues, without a large empty area below.
    await page.setViewportSize({width: 1280, height: 440});
    await page.screenshot({path: path.join(IMG, 'dashboard-queues.png')});
    await page.setViewportSize({width: 1280, height: 800});
  });

  await check('queue page shows scheduled and failed tasks', async () => {
    await page.locator('tr[data-queue="orders"] a').click();
    await page.locator('#scheduled-panel tr[data-task="order-2001"]').waitFor();
    await page.locator('#failed-panel tr[data-task="invoice-1042"]').waitFor();
    await page.locator('#errors-minute', {hasText: /^2$/}).waitFor();
    assert((await page.locator('#count-scheduled').textContent()) === '4', 'scheduled count');
  });

  await check('pause behind a confirmation: the page and the API say PAUSED', async () => {
    await page.locator('#pause-button').click();
    await page.locator('#confirm-dialog[open]').waitFor();
    await page.locator('#confirm-ok').click();
    await page.locator('#queue-state .badge', {hasText: 'PAUSED'}).waitFor();
    await page.locator('#resume-button').waitFor();
    const q = await rest('GET', `/v2/${P}/queues/orders`);
    assert(q.state === 'PAUSED', `API state ${q.state}`);
  });

  await check('live refresh: tasks created while paused appear as pending without a reload', async () => {
    await createTask('orders', 'order-1004', {route: '/orders/charge', payload: {order: 1004}});
    await createTask('orders', 'order-1005', {route: '/orders/charge', payload: {order: 1005}});
    await page.locator('#pending-panel tr[data-task="order-1005"]').waitFor();
  });

  await check('run a task: the receiver gets it and the page lists it as finished', async () => {
    await page.locator('#scheduled-panel button[data-act="run"][data-task="order-2001"]').click();
    await page.locator('#confirm-ok').click();
    await receiver.waitFor(1, {filter: (r) => (taskNameHeader(r) || '').endsWith('order-2001')});
    await page.locator('#recent-panel tr[data-task="order-2001"] .badge', {hasText: 'SUCCEEDED'}).waitFor();
    assert((await page.locator('#scheduled-panel tr[data-task="order-2001"]').count()) === 0, 'still scheduled');
    const st = await poll(async () => {
      const s = await taskStatus('orders', 'order-2001');
      return s.state === 'SUCCEEDED' && s;
    }, 'order-2001 to succeed');
    assert(st.attempts.length === 1 && st.attempts[0].httpStatus === 200, JSON.stringify(st.attempts));
    await page.locator('#scheduled-panel').scrollIntoViewIfNeeded();
    await hideToast(page);
    await page.screenshot({path: path.join(IMG, 'dashboard-queue.png'), fullPage: true});
  });

  await check('retry the failed task: it leaves the failed list and is scheduled again', async () => {
    healed = true;
    await page.locator('#failed-panel button[data-act="retry"][data-task="invoice-1042"]').click();
    await page.locator('#confirm-ok').click();
    await page.locator('#pending-panel tr[data-task="invoice-1042"]').waitFor();
    await page.locator('#failed-panel tr[data-task="invoice-1042"]').waitFor({state: 'detached'});
    const st = await taskStatus('orders', 'invoice-1042');
    assert(st.state === 'SCHEDULED', `API state ${st.state}`);
    assert(st.attempts.length === 2, `attempts ${st.attempts.length}`);
  });

  await check('resume: the queue runs again and the retried task succeeds', async () => {
    await page.locator('#resume-button').click();
    await page.locator('#confirm-ok').click();
    await page.locator('#queue-state .badge', {hasText: 'RUNNING'}).waitFor();
    const q = await rest('GET', `/v2/${P}/queues/orders`);
    assert(q.state === 'RUNNING', `API state ${q.state}`);
    await poll(async () => (await taskStatus('orders', 'invoice-1042')).state === 'SUCCEEDED', 'invoice-1042 to succeed');
  });

  await check('search by task id opens the task page with request and attempt history', async () => {
    await page.locator('#search').fill('invoice-1042');
    await page.locator('#search-form button').click();
    await page.locator('#task-state .badge', {hasText: 'SUCCEEDED'}).waitFor();
    await page.locator('#attempts-panel tbody tr').nth(2).waitFor();
    const statuses = await page.locator('#attempts-panel tbody tr td:nth-child(4)').allTextContents();
    assert(statuses.join(',') === 'HTTP 500,HTTP 500,HTTP 200', `responses ${statuses.join(',')}`);
    assert((await page.locator('#task-body').textContent()).includes('"invoice": 1042'), 'request body');
    await hideToast(page);
    await page.screenshot({path: path.join(IMG, 'dashboard-task.png'), fullPage: true});
  });

  await check('with API tokens the page asks for a token and sends it as the bearer', async () => {
    const {url, token, stop} = await tokenServer();
    try {
      const ctx = await browser.newContext({viewport: {width: 1280, height: 800}});
      const p2 = await ctx.newPage();
      p2.setDefaultTimeout(UI_TIMEOUT_MS);
      p2.on('pageerror', (e) => pageErrors.push(String(e)));
      await p2.goto(`${url}/ui`);
      await p2.locator('#token-dialog[open]').waitFor();
      await p2.locator('#token-input').fill(token);
      await p2.locator('#token-ok').click();
      await p2.locator('tr[data-queue="secured"]').waitFor();
      const stored = await p2.evaluate(() => [sessionStorage.getItem('stratus.token'), localStorage.getItem('stratus.token')]);
      assert(stored[0] === token && stored[1] === null, 'token kept in session storage only');
      await ctx.close();
    } finally {
      await stop();
    }
  });

  await check('no script errors and no request leaves the server (works offline)', async () => {
    assert(pageErrors.length === 0, `page errors: ${pageErrors.join('; ')}`);
    assert(foreign.length === 0, `foreign requests: ${foreign.join(', ')}`);
  });
} catch (e) {
  failed++;
  console.log(`FAIL  setup: ${e.message}`);
  if (process.env.VERBOSE) console.log(server.logTail());
} finally {
  if (browser) await browser.close().catch(() => {});
  receiver.close();
  await server.stop().catch(() => {});
  server.cleanup();
}

console.log(`dashboard checks: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);

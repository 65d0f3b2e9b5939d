// Stratus dashboard: a single page over the REST API of the same server (Cloud Tasks v2 under
// /v2/ and Stratus' own calls under /stratus/v1/). Plain JavaScript, no dependencies.
//
// Routes (location hash):
//   #/                                 queues of the project, every location
//   #/q/<location>/<queue>             one queue: pending, scheduled, failed and recent tasks
//   #/t/<location>/<queue>/<task>      one task: request, attempt history, receiver responses
'use strict';

const REFRESH_MS = 2500;
const LIST_PAGE = 1000;

const $ = (id) => document.getElementById(id);
const main = $('main');

// ---------------------------------------------------------------- state

let project = localStorage.getItem('stratus.project') || 'local';
let token = sessionStorage.getItem('stratus.token') || '';
let timer = null;
let renderSeq = 0;
let busy = false;
// Tasks seen live on a queue page; when one leaves the list, its final status is looked up
// and kept here (most recent first) for the "recent" panel.
const seen = new Map(); // queue name -> Set of task names
const recent = new Map(); // queue name -> [{status, at}]

// ---------------------------------------------------------------- helpers

function esc(v) {
  return String(v ?? '').replace(/[&<>"']/g, (c) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c]));
}
const short = (name) => String(name || '').split('/').pop();
const enc = encodeURIComponent;

function ts(v) {
  if (!v) return null;
  const t = Date.parse(v);
  return Number.isNaN(t) ? null : t;
}

function rel(v) {
  const t = ts(v);
  if (t === null) return '<span class="muted">—</span>';
  const d = t - Date.now();
  const a = Math.abs(d) / 1000;
  let s;
  if (a < 1) s = 'now';
  else if (a < 60) s = `${Math.round(a)}s`;
  else if (a < 3600) s = `${Math.round(a / 60)}m`;
  else if (a < 86400) s = `${Math.round(a / 3600)}h`;
  else s = `${Math.round(a / 86400)}d`;
  if (s !== 'now') s = d > 0 ? `in ${s}` : `${s} ago`;
  return `<span title="${esc(new Date(t).toISOString())}">${esc(s)}</span>`;
}

function abs(v) {
  const t = ts(v);
  return t === null ? '<span class="muted">—</span>' : esc(new Date(t).toISOString().replace('T', ' ').replace('Z', ' UTC'));
}

function badge(state) {
  return `<span class="badge ${esc(state)}">${esc(state || '—')}</span>`;
}

function statusBadge(code) {
  if (code === undefined || code === null) return '';
  const cls = code >= 200 && code < 300 ? 'ok' : code >= 500 ? 'bad' : 'warn';
  return `<span class="badge ${cls}">HTTP ${esc(code)}</span>`;
}

function decodeBody(b64) {
  if (!b64) return '';
  try {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const text = new TextDecoder('utf-8', {fatal: true}).decode(bytes);
    try {
      return JSON.stringify(JSON.parse(text), null, 2);
    } catch {
      return text;
    }
  } catch {
    return `(binary, ${Math.floor((b64.length * 3) / 4)} bytes, base64)\n${b64}`;
  }
}

function taskTarget(task) {
  const h = task.httpRequest || task.appEngineHttpRequest || {};
  const method = h.httpMethod || 'POST';
  const url = h.url || h.relativeUri || '';
  return {method, url};
}

function lastResponse(task) {
  const st = task.lastAttempt && task.lastAttempt.responseStatus;
  if (!st) return '<span class="muted">—</span>';
  return `<span class="${st.code ? 'err' : ''}">${esc(st.message || (st.code ? `code ${st.code}` : 'OK'))}</span>`;
}

let toastTimer = null;
function toast(msg, bad = false) {
  const t = $('toast');
  t.textContent = msg;
  t.className = bad ? 'toast bad' : 'toast';
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (t.hidden = true), 4000);
}

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, body) {
    const e = body && body.error;
    super((e && e.message) || `HTTP ${status}`);
    this.status = status;
    this.code = e && e.status;
  }
}

/** The server could not be reached at all. */
class OfflineError extends Error {}

async function api(method, path, body) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let r;
  try {
    r = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
  } catch (e) {
    throw new OfflineError(`The server did not answer (${e.message}).`);
  }
  const text = await r.text();
  let json = {};
  try {
    json = text ? JSON.parse(text) : {};
  } catch {
    json = {};
  }
  if (r.status === 401) {
    askToken(token ? 'The token was refused. Enter a valid API token.' : null);
    throw new ApiError(r.status, json);
  }
  if (!r.ok) throw new ApiError(r.status, json);
  return json;
}

const v2 = (p) => `/v2/${p}`;
const sv1 = (p) => `/stratus/v1/${p}`;
const locName = (loc) => `projects/${enc(project)}/locations/${enc(loc)}`;
const queueName = (loc, q) => `${locName(loc)}/queues/${enc(q)}`;
const taskName = (loc, q, t) => `${queueName(loc, q)}/tasks/${enc(t)}`;

async function listLocations() {
  const r = await api('GET', v2(`projects/${enc(project)}/locations`));
  return (r.locations || []).map((l) => l.locationId || short(l.name));
}

async function listQueues(loc) {
  const out = [];
  let pageToken = '';
  do {
    const r = await api('GET', v2(`${locName(loc)}/queues?pageSize=1000${pageToken ? `&pageToken=${enc(pageToken)}` : ''}`));
    out.push(...(r.queues || []));
    pageToken = r.nextPageToken || '';
  } while (pageToken);
  return out;
}

async function listTasks(loc, q) {
  const r = await api('GET', v2(`${queueName(loc, q)}/tasks?pageSize=${LIST_PAGE}`));
  return {tasks: r.tasks || [], more: Boolean(r.nextPageToken)};
}

async function failedTasks(loc, q) {
  const r = await api('GET', sv1(`${queueName(loc, q)}/failedTasks?pageSize=${LIST_PAGE}`));
  return {tasks: r.tasks || [], more: Boolean(r.nextPageToken)};
}

/** The last minute of every active queue of a location, by queue ID (docs/metrics.md). */
async function queueStats(loc) {
  const r = await api('GET', sv1(`${locName(loc)}/queueStats`));
  return new Map((r.queueStats || []).map((s) => [short(s.queue), s]));
}

/** A per-second rate, per minute when below one every ten seconds. */
function rate(v) {
  if (!v) return '0/s';
  if (v >= 10) return `${Math.round(v)}/s`;
  if (v >= 0.1) return `${v.toFixed(1)}/s`;
  return `${(v * 60).toFixed(1)}/min`;
}

/** The title of a stats cell: what the window holds. */
function statsTitle(s) {
  if (!s) return 'Nothing in the last minute';
  return `Last ${Math.round(s.windowSeconds)} s: ${s.creates} created, ${s.dispatches} dispatched, ` +
    `${s.succeeded} succeeded, ${s.failed} failed attempts, ${s.retries} retries, ` +
    `${s.permanentFailures} failed for good` + (s.nodes > 1 ? ` (${s.nodes} nodes)` : '');
}

// ---------------------------------------------------------------- dialogs

function confirmAction(title, text, {danger = false, label = 'Confirm'} = {}) {
  const d = $('confirm-dialog');
  $('confirm-title').textContent = title;
  $('confirm-text').textContent = text;
  const ok = $('confirm-ok');
  ok.textContent = label;
  ok.className = danger ? 'danger primary' : 'primary';
  d.returnValue = '';
  return new Promise((resolve) => {
    d.addEventListener('close', () => resolve(d.returnValue === 'ok'), {once: true});
    d.showModal();
    ok.focus();
  });
}

function askToken(message) {
  const d = $('token-dialog');
  if (d.open) return;
  if (message) $('token-text').textContent = message;
  $('token-input').value = '';
  d.returnValue = '';
  d.showModal();
}

$('token-dialog').addEventListener('close', () => {
  const d = $('token-dialog');
  if (d.returnValue === 'ok') {
    token = $('token-input').value.trim();
    if (token) sessionStorage.setItem('stratus.token', token);
    else sessionStorage.removeItem('stratus.token');
    render();
  } else if (d.returnValue === 'clear') {
    token = '';
    sessionStorage.removeItem('stratus.token');
    toast('Token forgotten');
    render();
  }
});
$('token-button').addEventListener('click', () => askToken(null));

/** Runs `fn` after confirmation, then refreshes the page; errors become a toast. */
async function act(title, text, fn, opts = {}) {
  if (!(await confirmAction(title, text, opts))) return;
  try {
    busy = true;
    await fn();
    toast(opts.done || `${title}: done`);
  } catch (e) {
    toast(`${title}: ${e.message}`, true);
  } finally {
    busy = false;
  }
  refresh();
}

// ---------------------------------------------------------------- routing

function route() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  if (parts[0] === 'q' && parts.length === 3) return {page: 'queue', loc: parts[1], q: parts[2]};
  if (parts[0] === 't' && parts.length === 4) return {page: 'task', loc: parts[1], q: parts[2], t: parts[3]};
  return {page: 'queues'};
}

const queueHref = (loc, q) => `#/q/${enc(loc)}/${enc(q)}`;
const taskHref = (loc, q, t) => `#/t/${enc(loc)}/${enc(q)}/${enc(t)}`;

function crumbs(r) {
  const items = [`<a href="#/">${esc(project)}</a>`];
  if (r.page !== 'queues') items.push(`<a href="${queueHref(r.loc, r.q)}">${esc(r.loc)} / ${esc(r.q)}</a>`);
  if (r.page === 'task') items.push(`<span class="here">${esc(r.t)}</span>`);
  $('crumbs').innerHTML = items.join('<span class="sep">›</span>');
}

function setLive(ok) {
  $('live').classList.toggle('stale', !ok);
  $('live').textContent = ok ? 'live' : 'offline';
}

/** Builds the page skeleton for the current route, then fills it. */
function render() {
  const r = route();
  crumbs(r);
  renderSeq++;
  if (r.page === 'queue') {
    main.innerHTML = queueSkeleton(r);
    bindQueue(r);
  } else if (r.page === 'task') {
    main.innerHTML = '<div id="task-view"><p class="muted">Loading…</p></div>';
  } else {
    main.innerHTML = `
      <div class="page-head"><div class="grow"><h1>Queues</h1>
        <div class="sub">Project <code>${esc(project)}</code>, every location</div></div></div>
      <div id="queues-view"><p class="muted">Loading…</p></div>`;
  }
  refresh();
}

/** Re-reads the data of the current page (also every REFRESH_MS). */
async function refresh() {
  clearTimeout(timer);
  const seq = renderSeq;
  const r = route();
  try {
    if (r.page === 'queue') await refreshQueue(r, seq);
    else if (r.page === 'task') await refreshTask(r, seq);
    else await refreshQueues(seq);
    setLive(true);
  } catch (e) {
    setLive(!(e instanceof OfflineError));
    if (seq === renderSeq) showError(e);
  }
  if (seq === renderSeq) timer = setTimeout(tick, REFRESH_MS);
}

function tick() {
  // Never repaint under an open dialog or an action in progress.
  if (busy || $('confirm-dialog').open || $('token-dialog').open) {
    timer = setTimeout(tick, REFRESH_MS);
    return;
  }
  refresh();
}

function showError(e) {
  const el = document.querySelector('#queues-view, #queue-error, #task-view');
  if (!el) return;
  const msg = e.status === 401 ? 'An API token is required (use the Token button).' : e.message;
  delete el.dataset.html;
  el.innerHTML = `<div class="banner">${esc(msg)}</div>`;
}

// ---------------------------------------------------------------- queues page

async function refreshQueues(seq) {
  const locs = await listLocations();
  const rows = [];
  const stats = new Map();
  for (const loc of locs) {
    for (const q of await listQueues(loc)) rows.push({loc, q});
    stats.set(loc, await queueStats(loc).catch(() => null));
  }
  for (const row of rows) {
    const m = stats.get(row.loc);
    row.stats = m ? m.get(short(row.q.name)) || null : undefined;
  }
  // Depth and failures per queue (one page each; "1000+" beyond).
  await Promise.all(
    rows.map(async (row) => {
      const id = short(row.q.name);
      const [live, failed] = await Promise.all([
        listTasks(row.loc, id).catch(() => null),
        failedTasks(row.loc, id).catch(() => null),
      ]);
      row.live = live;
      row.failed = failed;
    }),
  );
  if (seq !== renderSeq) return;
  const view = $('queues-view');
  if (!rows.length) {
    view.innerHTML = `<div class="panel"><div class="empty">No queues in project <code>${esc(project)}</code>.
      Create one with the API or <code>stratus queues create</code>, or choose another project above.</div></div>`;
    return;
  }
  const now = Date.now();
  const count = (l) => (l ? `${l.tasks.length}${l.more ? '+' : ''}` : '?');
  const due = (l) => (l ? l.tasks.filter((t) => (ts(t.scheduleTime) ?? 0) <= now).length : '?');
  const oldestDue = (l) => {
    const times = l ? l.tasks.map((t) => ts(t.scheduleTime) ?? 0).filter((t) => t <= now) : [];
    return times.length ? rel(new Date(Math.min(...times)).toISOString()) : '<span class="muted">—</span>';
  };
  const total = rows.reduce((n, r) => n + (r.live ? r.live.tasks.length : 0), 0);
  const paused = rows.filter((r) => r.q.state !== 'RUNNING').length;
  const failedTotal = rows.reduce((n, r) => n + (r.failed ? r.failed.tasks.length : 0), 0);
  const dispatchTotal = rows.reduce((n, r) => n + (r.stats ? r.stats.dispatchRate : 0), 0);
  // undefined: the statistics call failed; null: the queue did nothing in the last minute.
  const stat = (s, f) => (s === undefined ? '?' : esc(s ? s[f] : 0));
  view.innerHTML = `
    <div class="cards">
      <div class="card"><div class="label">Queues</div><div class="value">${rows.length}</div></div>
      <div class="card"><div class="label">Not running</div><div class="value">${paused}</div></div>
      <div class="card"><div class="label">Tasks waiting</div><div class="value">${total}</div></div>
      <div class="card"><div class="label">Dispatching</div><div class="value" id="dispatch-total">${rate(dispatchTotal)}</div></div>
      <div class="card"><div class="label">Failed (kept)</div><div class="value">${failedTotal}</div></div>
    </div>
    <div class="panel"><table id="queues-table">
      <thead><tr><th>Queue</th><th>Location</th><th>State</th><th class="num">Depth</th><th class="num">Due now</th><th>Oldest due</th>
        <th class="num" title="Attempts started per second over the last minute">Dispatch rate</th>
        <th class="num" title="Attempts started in the last minute">Dispatched (1 min)</th>
        <th class="num" title="Attempts that did not get a 2xx in the last minute">Errors (1 min)</th>
        <th class="num">Failed</th><th title="Dispatches per second, concurrent dispatches, attempts per task">Limits</th></tr></thead>
      <tbody>${rows
        .map(({loc, q, live, failed, stats: s}) => {
          const id = short(q.name);
          const rl = q.rateLimits || {};
          const rc = q.retryConfig || {};
          return `<tr data-queue="${esc(id)}">
            <td><a href="${queueHref(loc, id)}"><strong>${esc(id)}</strong></a></td>
            <td>${esc(loc)}</td>
            <td>${badge(q.state)}</td>
            <td class="num depth">${count(live)}</td>
            <td class="num">${due(live)}</td>
            <td>${oldestDue(live)}</td>
            <td class="num rate" title="${esc(statsTitle(s))}">${s === undefined ? '?' : rate(s && s.dispatchRate)}</td>
            <td class="num dispatched">${stat(s, 'dispatches')}</td>
            <td class="num errors">${stat(s, 'failed')}</td>
            <td class="num failed">${count(failed)}</td>
            <td class="limits">${rl.maxDispatchesPerSecond !== undefined ? `${esc(rl.maxDispatchesPerSecond)}/s` : '—'}
              · ${esc(rl.maxConcurrentDispatches ?? '—')} at once
              · ${rc.maxAttempts === -1 ? '∞' : esc(rc.maxAttempts ?? '—')}×</td>
          </tr>`;
        })
        .join('')}</tbody></table></div>`;
}

// ---------------------------------------------------------------- queue page

function queueSkeleton(r) {
  return `
    <div class="page-head">
      <div class="grow"><h1>${esc(r.q)} <span id="queue-state"></span></h1>
        <div class="sub">Location <code>${esc(r.loc)}</code> · <span id="queue-limits"></span></div></div>
      <form class="search" id="search-form">
        <input id="search" placeholder="Task ID" autocomplete="off" spellcheck="false" aria-label="Find a task by ID">
        <button type="submit">Find</button>
      </form>
      <button id="pause-button" hidden>Pause</button>
      <button id="resume-button" class="primary" hidden>Resume</button>
      <button id="purge-button" class="danger">Purge</button>
    </div>
    <div id="queue-error"></div>
    <div class="cards" id="queue-cards"></div>
    <div id="queue-panels"></div>`;
}

function bindQueue(r) {
  const name = queueName(r.loc, r.q);
  $('search-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const id = $('search').value.trim();
    if (id) location.hash = taskHref(r.loc, r.q, short(id));
  });
  $('pause-button').addEventListener('click', () =>
    act('Pause queue', `Pause ${r.q}? No task is dispatched until it is resumed (RunTask still works).`, () =>
      api('POST', v2(`${name}:pause`), {}), {label: 'Pause', done: `Queue ${r.q} paused`}));
  $('resume-button').addEventListener('click', () =>
    act('Resume queue', `Resume ${r.q}? Due tasks are dispatched at once.`, () =>
      api('POST', v2(`${name}:resume`), {}), {label: 'Resume', done: `Queue ${r.q} resumed`}));
  $('purge-button').addEventListener('click', () =>
    act('Purge queue', `Delete every task of ${r.q}? This cannot be undone.`, () =>
      api('POST', v2(`${name}:purge`), {}), {danger: true, label: 'Purge', done: `Queue ${r.q} purged`}));
}

function taskRows(r, tasks, kind) {
  return tasks
    .map((t) => {
      const id = short(t.name);
      const {method, url} = taskTarget(t);
      const buttons =
        kind === 'finished'
          ? `<button class="small" data-act="retry" data-task="${esc(id)}">Retry</button>`
          : `<button class="small" data-act="run" data-task="${esc(id)}">Run</button>
             <button class="small danger" data-act="delete" data-task="${esc(id)}">Delete</button>`;
      return `<tr data-task="${esc(id)}">
        <td><a class="mono" href="${taskHref(r.loc, r.q, id)}">${esc(id)}</a></td>
        <td><span class="mono">${esc(method)}</span> <span class="url" title="${esc(url)}">${esc(url)}</span></td>
        <td>${kind === 'finished' ? rel(t.finishTime) : rel(t.scheduleTime)}</td>
        <td class="num">${esc(t.dispatchCount || 0)}</td>
        <td>${kind === 'finished' ? badge(t.state) + ' ' : ''}${lastResponse(t)}</td>
        <td class="actions">${buttons}</td></tr>`;
    })
    .join('');
}

function taskPanel(id, title, rows, more, kind, r, emptyText) {
  const whenCol = kind === 'finished' ? 'Finished' : 'Scheduled';
  return `<div class="panel" id="${id}">
    <div class="panel-head"><h2>${esc(title)} <span class="count">(${rows.length}${more ? '+' : ''})</span></h2></div>
    ${
      rows.length
        ? `<table><thead><tr><th>Task</th><th>Request</th><th>${whenCol}</th><th class="num">Attempts</th><th>Last response</th><th></th></tr></thead>
           <tbody>${taskRows(r, rows, kind)}</tbody></table>`
        : `<div class="empty">${esc(emptyText)}</div>`
    }</div>`;
}

async function refreshQueue(r, seq) {
  const name = queueName(r.loc, r.q);
  const [queue, live, failed, stats] = await Promise.all([
    api('GET', v2(name)),
    listTasks(r.loc, r.q),
    failedTasks(r.loc, r.q),
    queueStats(r.loc).catch(() => null),
  ]);
  const s = stats ? stats.get(r.q) || null : undefined;
  // Tasks that left the live list since the last look: read how they ended.
  const key = `${project}|${name}`;
  const before = seen.get(key);
  const nowSet = new Set(live.tasks.map((t) => t.name));
  if (before) {
    const gone = [...before].filter((n) => !nowSet.has(n));
    const ended = await Promise.all(
      gone.slice(0, 50).map((n) => api('GET', sv1(n)).catch(() => null)),
    );
    const list = recent.get(key) || [];
    for (const st of ended) {
      if (st && st.state && st.state !== 'SCHEDULED') {
        const idx = list.findIndex((x) => x.name === st.task.name);
        if (idx >= 0) list.splice(idx, 1);
        list.unshift({...st.task, state: st.state, finishTime: st.finishTime});
      }
    }
    recent.set(key, list.slice(0, 20));
  }
  seen.set(key, nowSet);
  if (seq !== renderSeq) return;

  $('queue-state').innerHTML = badge(queue.state);
  const rl = queue.rateLimits || {};
  const rc = queue.retryConfig || {};
  $('queue-limits').textContent =
    `max ${rl.maxDispatchesPerSecond ?? '—'}/s, ${rl.maxConcurrentDispatches ?? '—'} concurrent, ` +
    `${rc.maxAttempts === -1 ? 'unlimited' : rc.maxAttempts ?? '—'} attempts`;
  $('pause-button').hidden = queue.state !== 'RUNNING';
  $('resume-button').hidden = queue.state !== 'PAUSED';
  $('queue-error').innerHTML = '';

  const now = Date.now();
  const pending = live.tasks.filter((t) => (ts(t.scheduleTime) ?? 0) <= now);
  const scheduled = live.tasks.filter((t) => (ts(t.scheduleTime) ?? 0) > now);
  const failedRows = failed.tasks.map((s) => ({...s.task, state: s.state, finishTime: s.finishTime}));
  const recentRows = (recent.get(key) || []).filter((t) => !nowSet.has(t.name));
  const retried = live.tasks.filter((t) => t.dispatchCount > 0).length;

  $('queue-cards').innerHTML = `
    <div class="card"><div class="label">Pending (due)</div><div class="value" id="count-pending">${pending.length}</div></div>
    <div class="card"><div class="label">Scheduled</div><div class="value" id="count-scheduled">${scheduled.length}</div></div>
    <div class="card"><div class="label">Retrying</div><div class="value">${retried}</div></div>
    <div class="card"><div class="label">Failed (kept)</div><div class="value" id="count-failed">${failedRows.length}${failed.more ? '+' : ''}</div></div>
    <div class="card" title="${esc(statsTitle(s))}"><div class="label">Dispatch rate</div><div class="value" id="dispatch-rate">${s === undefined ? '?' : rate(s && s.dispatchRate)}</div></div>
    <div class="card" title="${esc(statsTitle(s))}"><div class="label">Created / s</div><div class="value">${s === undefined ? '?' : rate(s && s.createRate)}</div></div>
    <div class="card" title="${esc(statsTitle(s))}"><div class="label">Errors (1 min)</div><div class="value" id="errors-minute">${s === undefined ? '?' : s ? s.failed : 0}</div></div>
    <div class="card"><div class="label">In flight</div><div class="value">${s === undefined ? '?' : s ? s.inFlight : 0}</div></div>`;

  scheduled.sort((a, b) => (ts(a.scheduleTime) ?? 0) - (ts(b.scheduleTime) ?? 0));
  $('queue-panels').innerHTML =
    taskPanel('pending-panel', 'Pending', pending, false, 'live', r,
      queue.state === 'RUNNING' ? 'Nothing due: every due task has been dispatched.' : 'No due tasks.') +
    taskPanel('scheduled-panel', 'Scheduled', scheduled, live.more, 'live', r, 'No tasks scheduled for later.') +
    taskPanel('failed-panel', 'Failed', failedRows, failed.more, 'finished', r, 'No failed tasks kept for this queue.') +
    taskPanel('recent-panel', 'Recently finished', recentRows, false, 'finished', r,
      'Tasks that finish while this page is open appear here.');
}

// Row buttons of the queue page (one delegated listener for every render).
main.addEventListener('click', (ev) => {
  const b = ev.target.closest('button[data-act]');
  const r = route();
  if (!b || r.page !== 'queue') return;
  const t = b.dataset.task;
  const tn = taskName(r.loc, r.q, t);
  if (b.dataset.act === 'run') {
    act('Run task', `Dispatch ${t} now, whatever its schedule and the queue's state?`, () =>
      api('POST', v2(`${tn}:run`), {}), {label: 'Run', done: `Task ${t} dispatched`});
  } else if (b.dataset.act === 'delete') {
    act('Delete task', `Delete ${t}? This cannot be undone.`, () => api('DELETE', v2(tn)),
      {danger: true, label: 'Delete', done: `Task ${t} deleted`});
  } else if (b.dataset.act === 'retry') {
    act('Retry task', `Schedule ${t} again, due now, with a fresh retry budget?`, () =>
      api('POST', sv1(`${tn}:retry`), {}), {label: 'Retry', done: `Task ${t} scheduled again`});
  }
});

// ---------------------------------------------------------------- task page

async function refreshTask(r, seq) {
  const tn = taskName(r.loc, r.q, r.t);
  let st;
  try {
    st = await api('GET', sv1(`${tn}?responseView=FULL`));
  } catch (e) {
    if (e.status === 404) {
      if (seq !== renderSeq) return;
      delete $('task-view').dataset.html;
      $('task-view').innerHTML = `<div class="page-head"><div class="grow"><h1 class="mono">${esc(r.t)}</h1></div></div>
        <div class="panel"><div class="empty">No task <code>${esc(r.t)}</code> in queue
        <a href="${queueHref(r.loc, r.q)}">${esc(r.q)}</a>: it never existed, was deleted, or its
        retention window ended.</div></div>`;
      return;
    }
    throw e;
  }
  if (seq !== renderSeq) return;
  const t = st.task || {};
  const h = t.httpRequest || t.appEngineHttpRequest || {};
  const {method, url} = taskTarget(t);
  const live = st.state === 'SCHEDULED' || st.state === 'DISPATCHED';
  const headers = Object.entries(h.headers || {})
    .map(([k, v]) => `${k}: ${v}`)
    .join('\n');
  const body = decodeBody(h.body);
  const attempts = st.attempts || [];
  const auth = h.oidcToken ? `OIDC token (${h.oidcToken.serviceAccountEmail || ''})` : h.oauthToken ? 'OAuth token' : 'none';

  const html = `
    <div class="page-head">
      <div class="grow"><h1><span class="mono">${esc(r.t)}</span> <span id="task-state">${badge(st.state)}</span></h1>
        <div class="sub">Queue <a href="${queueHref(r.loc, r.q)}">${esc(r.q)}</a> · ${esc(r.loc)}</div></div>
      ${
        live
          ? `<button id="run-button">Run now</button><button id="delete-button" class="danger">Delete</button>`
          : `<button id="retry-button" class="primary">Retry</button>`
      }
    </div>
    <div class="grid2">
      <div class="panel"><div class="panel-head"><h2>Task</h2></div><div class="body"><dl class="kv">
        <dt>State</dt><dd>${badge(st.state)}</dd>
        <dt>Created</dt><dd>${abs(t.createTime)}</dd>
        <dt>Scheduled</dt><dd>${abs(t.scheduleTime)} (${rel(t.scheduleTime)})</dd>
        <dt>Finished</dt><dd>${abs(st.finishTime)}</dd>
        <dt>Dispatch deadline</dt><dd>${esc(t.dispatchDeadline || '—')}</dd>
        <dt>Dispatches / responses</dt><dd>${esc(t.dispatchCount || 0)} / ${esc(t.responseCount || 0)}</dd>
        <dt>Last response</dt><dd>${lastResponse(t)}</dd>
      </dl></div></div>
      <div class="panel"><div class="panel-head"><h2>Request</h2></div><div class="body"><dl class="kv">
        <dt>Method</dt><dd class="mono">${esc(method)}</dd>
        <dt>URL</dt><dd class="mono">${esc(url || '—')}</dd>
        <dt>Authorization</dt><dd>${esc(auth)}</dd>
      </dl>
      ${headers ? `<h3>Headers</h3><pre>${esc(headers)}</pre>` : ''}
      <h3>Body</h3>${body ? `<pre id="task-body">${esc(body)}</pre>` : '<p class="muted">(empty)</p>'}
      </div></div>
    </div>
    <div class="panel" id="attempts-panel">
      <div class="panel-head"><h2>Attempts <span class="count">(${attempts.length})</span></h2></div>
      ${
        attempts.length
          ? `<table><thead><tr><th class="num">#</th><th>Dispatched</th><th>Answered</th><th>Receiver response</th><th class="num">Latency</th><th>Error</th></tr></thead><tbody>
          ${attempts
            .map(
              (a) => `<tr><td class="num">${esc(a.seq)}</td><td>${abs(a.dispatchTime)}</td><td>${abs(a.responseTime)}</td>
              <td>${a.httpStatus ? statusBadge(a.httpStatus) : '<span class="badge bad">no response</span>'}</td>
              <td class="num">${esc(a.latencyMs ?? '—')} ms</td><td class="err">${esc(a.error || '')}</td></tr>`,
            )
            .join('')}</tbody></table>`
          : '<div class="empty">No attempt yet.</div>'
      }
    </div>`;
  // Repaint only on change, so that a selection in the page survives the refresh.
  const view = $('task-view');
  if (view.dataset.html === html) return;
  view.dataset.html = html;
  view.innerHTML = html;
  const run = $('run-button');
  if (run)
    run.addEventListener('click', () =>
      act('Run task', `Dispatch ${r.t} now, whatever its schedule and the queue's state?`, () =>
        api('POST', v2(`${tn}:run`), {}), {label: 'Run', done: `Task ${r.t} dispatched`}));
  const del = $('delete-button');
  if (del)
    del.addEventListener('click', () =>
      act('Delete task', `Delete ${r.t}? This cannot be undone.`, () => api('DELETE', v2(tn)),
        {danger: true, label: 'Delete', done: `Task ${r.t} deleted`}));
  const retry = $('retry-button');
  if (retry)
    retry.addEventListener('click', () =>
      act('Retry task', `Schedule ${r.t} again, due now, with a fresh retry budget?`, () =>
        api('POST', sv1(`${tn}:retry`), {}), {label: 'Retry', done: `Task ${r.t} scheduled again`}));
}

// ---------------------------------------------------------------- start

$('project').value = project;
$('project-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const p = $('project').value.trim();
  if (!p) return;
  project = p;
  localStorage.setItem('stratus.project', p);
  if (location.hash && location.hash !== '#/') location.hash = '#/';
  else render();
});
$('project').addEventListener('change', () => $('project-form').requestSubmit());
window.addEventListener('hashchange', render);
render();

// The conformance checklist (tests/compat/README.md, 20 scenarios) under the official
// @google-cloud/tasks Node client, for the pairs `node-grpc` (grpc-js, insecure channel) and
// `node-rest` (REST fallback, `fallback: 'rest'`), against ONE real `stratus serve`.
//
//   node checklist.mjs            runs both pairs (concurrently), prints one line per pair
//   STRATUS_COMPAT_RESULTS=dir    also writes <dir>/node-grpc.json and <dir>/node-rest.json
//   STRATUS_BIN=path              the server binary (default <repo>/target/debug/stratus)
//
// Exit status: 0 when no scenario is `fail`, 1 otherwise, 2 when the harness itself broke.

import fs from 'node:fs';
import path from 'node:path';

import {CloudTasksClient} from '@google-cloud/tasks';
import grpc from '@grpc/grpc-js';
import {PassThroughClient} from 'google-auth-library';

import {REPO_ROOT, Receiver, StratusServer, now, poll, rand, sleep, versions} from './lib.mjs';

const LOCATION = 'projects/compat/locations/local';
const SCENARIOS = Array.from({length: 20}, (_, i) => i + 1);
const SCENARIO_TIMEOUT_MS = 75_000;
const WATCHDOG_MS = 150_000;
const TOL_S = 0.03; // lower bounds on time have a 30 ms tolerance

// Verbatim wire texts (spec §2.1, recorded from the real service).
const QUEUE_ALREADY_EXISTS = 'Queue already exists';
const QUEUE_EXISTED_TOO_RECENTLY = 'The queue cannot be created because a queue with this name existed too recently.';
const TASK_ALREADY_EXISTS = 'Requested entity already exists';
const TASK_EXISTED_TOO_RECENTLY = 'The task cannot be created because a task with this name existed too recently.';
const TASK_GONE =
  'The task no longer exists, though a task with this name existed recently. The task either successfully completed or was deleted.';

const GRPC_CODE = {
  OK: 0, CANCELLED: 1, UNKNOWN: 2, INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5, ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7, RESOURCE_EXHAUSTED: 8, FAILED_PRECONDITION: 9, ABORTED: 10, OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14, DATA_LOSS: 15, UNAUTHENTICATED: 16,
};
// Canonical code → HTTP status (spec §4).
const HTTP_STATUS = {
  CANCELLED: 499, UNKNOWN: 500, INVALID_ARGUMENT: 400, DEADLINE_EXCEEDED: 504, NOT_FOUND: 404, ALREADY_EXISTS: 409,
  PERMISSION_DENIED: 403, UNAUTHENTICATED: 401, RESOURCE_EXHAUSTED: 429, FAILED_PRECONDITION: 400, ABORTED: 409,
  OUT_OF_RANGE: 400, UNIMPLEMENTED: 501, INTERNAL: 500, UNAVAILABLE: 503, DATA_LOSS: 500,
};

const V = versions();
const DISPATCH_HEADERS = JSON.parse(
  fs.readFileSync(path.join(REPO_ROOT, 'testdata', 'conformance', 'dispatch-headers.json'), 'utf8'),
).find((c) => c.name === 'dispatch/http');

// ---------------------------------------------------------------------------------------------
// Small helpers

class Failure extends Error {}

function check(cond, what) {
  if (!cond) throw new Failure(what);
}

function eq(actual, expected, what) {
  if (actual !== expected) throw new Failure(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
}

/** Seconds of a Duration or Timestamp object as the Node client presents it ({seconds: string|Long|number, nanos}). */
function secs(d) {
  if (d === null || d === undefined) return null;
  return Number(d.seconds ?? 0) + (d.nanos ?? 0) / 1e9;
}

/** The client decodes enums to names; accept the number too (REST asks for enum-encoding=int). */
function enumIs(v, name, num) {
  return v === name || v === num;
}

const bodyText = (b) => (b ? Buffer.from(b).toString('utf8') : '');
const short = (x, n = 300) => {
  const s = typeof x === 'string' ? x : JSON.stringify(x);
  return s && s.length > n ? `${s.slice(0, n)}…` : s;
};
const dur = (s) => ({seconds: Math.floor(s), nanos: Math.round((s - Math.floor(s)) * 1e9)});
const nowSeconds = () => Math.floor(Date.now() / 1000);

// ---------------------------------------------------------------------------------------------
// One client/transport pair

class Pair {
  constructor(id, server) {
    this.id = id;
    this.rest = id === 'node-rest';
    this.client = this.rest
      ? // REST fallback: URL = http://127.0.0.1:<port>/v2/...; an auth client with .fetch is required.
        new CloudTasksClient({
          apiEndpoint: '127.0.0.1',
          port: server.port,
          protocol: 'http',
          fallback: 'rest',
          authClient: new PassThroughClient(),
          projectId: 'compat',
        })
      : // gRPC: sslCreds replaces both TLS and per-call auth.
        new CloudTasksClient({
          apiEndpoint: '127.0.0.1',
          port: server.port,
          sslCreds: grpc.credentials.createInsecure(),
          authClient: new PassThroughClient(),
          projectId: 'compat',
        });
    this.clientLabel = this.rest
      ? `@google-cloud/tasks ${V.tasks}, google-gax ${V.gax} (fallback: 'rest'), google-auth-library ${V.auth}, gaxios ${V.gaxios}`
      : `@google-cloud/tasks ${V.tasks}, google-gax ${V.gax}, @grpc/grpc-js ${V.grpc}`;
    this.receivers = [];
  }

  queueName(n) {
    return `${LOCATION}/queues/c-${this.id}-${n}-${rand(6)}`;
  }

  async createQueue(n, extra = {}) {
    const [q] = await this.client.createQueue({parent: LOCATION, queue: {name: this.queueName(n), ...extra}});
    return q;
  }

  async pausedQueue(n, extra = {}) {
    const q = await this.createQueue(n, extra);
    await this.client.pauseQueue({name: q.name});
    return q;
  }

  async receiver(handler) {
    const r = await new Receiver(handler).start();
    this.receivers.push(r);
    return r;
  }

  close() {
    for (const r of this.receivers) r.close();
    return this.client.close();
  }
}

/** Per-scenario state: limitation notes and informative notes. */
class Ctx {
  constructor(pair) {
    this.pair = pair;
    this.limitations = [];
    this.notes = [];
  }

  /**
   * Awaits `fn()` and requires it to fail with canonical `code` (and `message` unless null).
   * gRPC: err.code (number) and err.details. REST fallback (gax 5.0.8 + gaxios 7): a raw GaxiosError
   * whose `code`/`status` is the HTTP status and whose message is the JSON body; the body's
   * error.code/status/message are checked and a limitation is recorded.
   * Returns the server's message.
   */
  async expectError(what, fn, code, message = null) {
    let result;
    try {
      result = await fn();
    } catch (e) {
      return this._checkError(what, e, code, message);
    }
    throw new Failure(`${what}: expected ${code}${message ? ` "${message}"` : ''}, but the call succeeded: ${short(result)}`);
  }

  _checkError(what, e, code, message) {
    if (!this.pair.rest) {
      if (e.code !== GRPC_CODE[code] || (message !== null && e.details !== message)) {
        throw new Failure(`${what}: expected gRPC ${GRPC_CODE[code]} (${code})${message ? ` "${message}"` : ''}, got code ${e.code} details ${JSON.stringify(e.details)} (${e.message})`);
      }
      return e.details;
    }
    const want = HTTP_STATUS[code];
    if (e?.name === 'GaxiosError' || e?.constructor?.name === 'GaxiosError') {
      let body;
      try {
        body = JSON.parse(e.message);
      } catch {
        body = typeof e.response?.data === 'string' ? JSON.parse(e.response.data) : e.response?.data;
      }
      const err = body?.error ?? {};
      const httpStatus = e.response?.status ?? e.status;
      if (e.code !== want || httpStatus !== want || err.code !== want || err.status !== code || (message !== null && err.message !== message)) {
        throw new Failure(`${what}: expected HTTP ${want} {"error":{"code":${want},"status":"${code}"${message ? `,"message":"${message}"` : ''}}}, got GaxiosError code ${e.code}, HTTP ${httpStatus}, body ${short(e.message)}`);
      }
      this.limitations.push(`${what} → GaxiosError code ${e.code} (not ${GRPC_CODE[code]}), body status ${err.status}, message ${JSON.stringify(err.message)}`);
      return err.message;
    }
    // A client that maps REST errors to GoogleError (newer gax) would land here.
    if (e.code !== GRPC_CODE[code] || (message !== null && e.details !== message && e.message !== message)) {
      throw new Failure(`${what}: expected ${code}${message ? ` "${message}"` : ''}, got ${e?.constructor?.name} code ${e.code} details ${JSON.stringify(e.details)} message ${short(e.message)}`);
    }
    return e.details ?? e.message;
  }

  result() {
    if (this.limitations.length) {
      return {
        status: 'limitation',
        note:
          `@google-cloud/tasks ${V.tasks} REST fallback (google-gax ${V.gax}, gaxios ${V.gaxios}) rejects with a raw GaxiosError: ` +
          `err.code = the HTTP status, err.message = the JSON error body, no gRPC code and no err.details ` +
          `(gaxios' default validateStatus rejects the non-2xx answer inside authClient.fetch, so gax's ` +
          `decodeResponse → GoogleError.parseHttpError never runs). ` +
          `Server answer checked from the body (error.code = HTTP status, error.status, error.message): ` +
          this.limitations.join('; ') +
          (this.notes.length ? `; ${this.notes.join('; ')}` : ''),
      };
    }
    return {status: 'pass', note: this.notes.join('; ')};
  }
}

/** Waits until GetTask fails (the task finished); returns nothing. Bounded. */
async function waitTaskGone(P, name) {
  await poll(async () => {
    try {
      await P.client.getTask({name});
      return false;
    } catch {
      return true;
    }
  }, `GetTask ${name} to fail`);
}

// ---------------------------------------------------------------------------------------------
// The scenarios. Each takes (P: Pair, C: Ctx), throws on a failed expectation.

const scenarios = {
  // 1. CreateQueue with only a name: state RUNNING and the default limits echoed.
  async 1(P) {
    const q = await P.createQueue(1);
    check(enumIs(q.state, 'RUNNING', 1), `state: expected RUNNING, got ${q.state}`);
    eq(q.rateLimits?.maxDispatchesPerSecond, 500, 'rateLimits.maxDispatchesPerSecond');
    eq(q.rateLimits?.maxBurstSize, 100, 'rateLimits.maxBurstSize');
    eq(q.rateLimits?.maxConcurrentDispatches, 1000, 'rateLimits.maxConcurrentDispatches');
    eq(q.retryConfig?.maxAttempts, 100, 'retryConfig.maxAttempts');
    eq(secs(q.retryConfig?.minBackoff), 0.1, 'retryConfig.minBackoff (s)');
    eq(secs(q.retryConfig?.maxBackoff), 3600, 'retryConfig.maxBackoff (s)');
    eq(q.retryConfig?.maxDoublings, 16, 'retryConfig.maxDoublings');
  },

  // 2. CreateQueue twice: ALREADY_EXISTS "Queue already exists".
  async 2(P, C) {
    const q = await P.createQueue(2);
    await C.expectError('second CreateQueue', () => P.client.createQueue({parent: LOCATION, queue: {name: q.name}}), 'ALREADY_EXISTS', QUEUE_ALREADY_EXISTS);
  },

  // 3. DeleteQueue, then CreateQueue with the same name: FAILED_PRECONDITION.
  async 3(P, C) {
    const q = await P.createQueue(3);
    await P.client.deleteQueue({name: q.name});
    await C.expectError('CreateQueue after DeleteQueue', () => P.client.createQueue({parent: LOCATION, queue: {name: q.name}}), 'FAILED_PRECONDITION', QUEUE_EXISTED_TOO_RECENTLY);
  },

  // 4. UpdateQueue (no mask) of a missing queue creates it.
  async 4(P) {
    const name = P.queueName(4);
    const [q] = await P.client.updateQueue({queue: {name, rateLimits: {maxDispatchesPerSecond: 7}}});
    eq(q.name, name, 'UpdateQueue answer name');
    eq(q.rateLimits?.maxDispatchesPerSecond, 7, 'UpdateQueue answer rate');
    const [g] = await P.client.getQueue({name});
    eq(g.rateLimits?.maxDispatchesPerSecond, 7, 'GetQueue rate');
  },

  // 5. Masks in snake_case and lowerCamelCase; the other fields stay.
  async 5(P, C) {
    const q0 = await P.createQueue(5, {rateLimits: {maxConcurrentDispatches: 3}});
    eq(q0.rateLimits?.maxConcurrentDispatches, 3, 'CreateQueue maxConcurrentDispatches');
    for (const [rate, mask] of [
      [20, 'rate_limits.max_dispatches_per_second'],
      [30, 'rateLimits.maxDispatchesPerSecond'],
    ]) {
      const [q] = await P.client.updateQueue({
        queue: {name: q0.name, rateLimits: {maxDispatchesPerSecond: rate}},
        updateMask: {paths: [mask]},
      });
      eq(q.rateLimits?.maxDispatchesPerSecond, rate, `UpdateQueue(${mask}) answer rate`);
      eq(q.rateLimits?.maxConcurrentDispatches, 3, `UpdateQueue(${mask}) answer maxConcurrentDispatches`);
      eq(q.retryConfig?.maxAttempts, 100, `UpdateQueue(${mask}) answer maxAttempts`);
      const [g] = await P.client.getQueue({name: q0.name});
      eq(g.rateLimits?.maxDispatchesPerSecond, rate, `GetQueue after ${mask}: rate`);
      eq(g.rateLimits?.maxConcurrentDispatches, 3, `GetQueue after ${mask}: maxConcurrentDispatches`);
      eq(g.retryConfig?.maxAttempts, 100, `GetQueue after ${mask}: maxAttempts`);
    }
    if (P.rest) {
      return {
        status: 'limitation',
        note: `@google-cloud/tasks ${V.tasks} REST fallback serialises every FieldMask path in lowerCamelCase (proto3 JSON): both calls sent updateMask=rateLimits.maxDispatchesPerSecond (accepted); the snake_case wire spelling is only reachable over gRPC`,
      };
    }
  },

  // 6. CreateTask without a name on a paused queue: generated id, BASIC without body, FULL with it.
  async 6(P) {
    const r = await P.receiver();
    const q = await P.pausedQueue(6);
    const [t] = await P.client.createTask({
      parent: q.name,
      task: {httpRequest: {httpMethod: 'POST', url: `${r.url}/s6`, body: Buffer.from('hello')}},
    });
    check(new RegExp(`^${q.name}/tasks/[A-Za-z0-9_-]+$`).test(t.name), `name ${t.name} is not <queue>/tasks/<id>`);
    check(enumIs(t.view, 'BASIC', 1), `answer view: expected BASIC, got ${t.view}`);
    eq(bodyText(t.httpRequest?.body), '', 'CreateTask (BASIC) answer body');
    eq(secs(t.dispatchDeadline), 600, 'CreateTask answer dispatchDeadline (s)');
    const [f] = await P.client.getTask({name: t.name, responseView: 'FULL'});
    check(enumIs(f.view, 'FULL', 2), `GetTask view: expected FULL, got ${f.view}`);
    eq(bodyText(f.httpRequest?.body), 'hello', 'GetTask FULL body');
    eq(f.httpRequest?.headers?.['User-Agent'], 'Google-Cloud-Tasks', 'GetTask FULL header User-Agent');
    eq(secs(f.dispatchDeadline), 600, 'GetTask FULL dispatchDeadline (s)');
    check(enumIs(f.httpRequest?.httpMethod, 'POST', 1), `httpMethod: expected POST, got ${f.httpRequest?.httpMethod}`);
    eq(f.httpRequest?.url, `${r.url}/s6`, 'GetTask FULL url');
    check(r.requests.length === 0, 'the paused queue dispatched');
  },

  // 7. Duplicate names: live, after success, after delete.
  async 7(P, C) {
    const r = await P.receiver();
    // (a) live (paused queue)
    const qa = await P.pausedQueue(7);
    const na = `${qa.name}/tasks/t7a-${rand()}`;
    const task = (name) => ({name, httpRequest: {url: `${r.url}/s7`}});
    await P.client.createTask({parent: qa.name, task: task(na)});
    await C.expectError('(a) duplicate of a live task', () => P.client.createTask({parent: qa.name, task: task(na)}), 'ALREADY_EXISTS', TASK_ALREADY_EXISTS);
    // (b) after it succeeded (running queue, receiver 200)
    const qb = await P.createQueue(7);
    const nb = `${qb.name}/tasks/t7b-${rand()}`;
    await P.client.createTask({parent: qb.name, task: task(nb)});
    await r.waitFor(1, {filter: (x) => x.headers['x-cloudtasks-taskname'] === nb.split('/').pop()});
    await waitTaskGone(P, nb);
    await C.expectError('(b) duplicate after success', () => P.client.createTask({parent: qb.name, task: task(nb)}), 'ALREADY_EXISTS', TASK_EXISTED_TOO_RECENTLY);
    // (c) after DeleteTask (paused queue)
    const nc = `${qa.name}/tasks/t7c-${rand()}`;
    await P.client.createTask({parent: qa.name, task: task(nc)});
    await P.client.deleteTask({name: nc});
    await C.expectError('(c) duplicate after DeleteTask', () => P.client.createTask({parent: qa.name, task: task(nc)}), 'ALREADY_EXISTS', TASK_EXISTED_TOO_RECENTLY);
  },

  // 8. GetTask after the task succeeded: NOT_FOUND with the "existed recently" text.
  async 8(P, C) {
    const r = await P.receiver();
    const q = await P.createQueue(8);
    const [t] = await P.client.createTask({parent: q.name, task: {name: `${q.name}/tasks/t8-${rand()}`, httpRequest: {url: `${r.url}/s8`}}});
    await r.waitFor(1);
    let lastErr = null;
    await poll(async () => {
      try {
        await P.client.getTask({name: t.name});
        return false;
      } catch (e) {
        lastErr = e;
        return true;
      }
    }, 'GetTask to fail after the success');
    C._checkError('GetTask after success', lastErr, 'NOT_FOUND', TASK_GONE);
  },

  // 9. Receiver answers 503, 404, 200: the header set of dispatch-headers.json (dispatch/http).
  async 9(P) {
    const script = DISPATCH_HEADERS.attempts.map((a) => a.status); // 503, 404, 200
    const r = await P.receiver((_rec, i) => ({status: script[i] ?? 200}));
    const q = await P.createQueue(9, {retryConfig: {minBackoff: dur(0.1), maxBackoff: dur(0.2)}});
    const queueId = q.name.split('/').pop();
    const taskId = `t9-${rand()}`;
    await P.client.createTask({parent: q.name, task: {name: `${q.name}/tasks/${taskId}`, httpRequest: {url: `${r.url}/s9`}}});
    const seen = await r.waitFor(script.length);
    for (const a of DISPATCH_HEADERS.attempts) {
      const got = seen[a.attempt].headers; // node lower-cases header names
      const want = {};
      for (const [k, v] of Object.entries(a.headers)) want[k.toLowerCase()] = v.replace('{queue}', queueId).replace('{task}', taskId);
      for (const [k, v] of Object.entries(want)) {
        if (v === '{eta}') {
          check(got[k] !== undefined && Number.isFinite(Number(got[k])), `attempt ${a.attempt}: ${k} missing or not a number: ${JSON.stringify(got[k])}`);
        } else {
          eq(got[k], v, `attempt ${a.attempt} (after ${a.attempt ? script[a.attempt - 1] : 'nothing'}): header ${k}`);
        }
      }
      const extra = Object.keys(got).filter((k) => k.startsWith('x-cloudtasks-') && !(k in want));
      check(extra.length === 0, `attempt ${a.attempt}: unexpected headers ${extra.map((k) => `${k}: ${got[k]}`).join(', ')}`);
    }
  },

  // 10. dispatch_deadline 15 s, receiver holds the first attempt 20 s: a retry with 504.
  async 10(P, C) {
    const r = await P.receiver((_rec, i) => (i === 0 ? {status: 200, delayMs: 20_000} : {status: 200}));
    const q = await P.createQueue(10, {retryConfig: {minBackoff: dur(1)}});
    await P.client.createTask({
      parent: q.name,
      task: {name: `${q.name}/tasks/t10-${rand()}`, dispatchDeadline: dur(15), httpRequest: {url: `${r.url}/s10`}},
    });
    const [first] = await r.waitFor(1);
    const seen = await r.waitFor(2, {timeoutMs: 30_000});
    const gap = (seen[1].t - first.t) / 1000;
    check(gap >= 15 - TOL_S, `the second attempt came ${gap.toFixed(3)} s after the first (expected ≥ 15 s)`);
    check(gap < 15 + 1 + 5, `the second attempt came ${gap.toFixed(3)} s after the first (expected about 16 s)`);
    const h = seen[1].headers;
    eq(h['x-cloudtasks-taskpreviousresponse'], '504', 'second attempt X-CloudTasks-TaskPreviousResponse');
    eq(h['x-cloudtasks-taskretrycount'], '1', 'second attempt X-CloudTasks-TaskRetryCount');
    eq(h['x-cloudtasks-taskexecutioncount'], '0', 'second attempt X-CloudTasks-TaskExecutionCount');
    C.notes.push(`second attempt ${gap.toFixed(2)} s after the first`);
  },

  // 11. Backoff series 0.05 → 1.5 s with 3 doublings, 8 attempts.
  async 11(P, C) {
    const r = await P.receiver(() => ({status: 500}));
    const q = await P.createQueue(11, {
      retryConfig: {minBackoff: dur(0.05), maxBackoff: dur(1.5), maxDoublings: 3, maxAttempts: 8},
    });
    await P.client.createTask({parent: q.name, task: {httpRequest: {url: `${r.url}/s11`}}});
    const seen = await r.waitFor(8);
    await sleep(1000);
    eq(r.requests.length, 8, 'attempts (1 s after the 8th)');
    const expected = [0.05, 0.1, 0.2, 0.4, 0.8, 1.2, 1.5];
    const gaps = expected.map((_, i) => (seen[i + 1].t - seen[i].t) / 1000);
    expected.forEach((e, i) => {
      check(gaps[i] >= e - TOL_S && gaps[i] < e + 2, `gap ${i + 1}: ${gaps[i].toFixed(3)} s, expected ≥ ${e} s (−30 ms) and < ${e + 2} s; all gaps ${gaps.map((g) => g.toFixed(3)).join(', ')}`);
    });
    C.notes.push(`gaps ${gaps.map((g) => g.toFixed(3)).join(', ')} s`);
  },

  // 12. max_attempts 3: exactly 3 attempts, then GetTask NOT_FOUND.
  async 12(P, C) {
    const r = await P.receiver(() => ({status: 500}));
    const q = await P.createQueue(12, {retryConfig: {maxAttempts: 3, minBackoff: dur(0.05), maxBackoff: dur(0.05)}});
    const [t] = await P.client.createTask({parent: q.name, task: {name: `${q.name}/tasks/t12-${rand()}`, httpRequest: {url: `${r.url}/s12`}}});
    await r.waitFor(3);
    await sleep(1000);
    eq(r.requests.length, 3, 'attempts (1 s after the third)');
    const msg = await C.expectError('GetTask after the last attempt', () => P.client.getTask({name: t.name}), 'NOT_FOUND');
    if (!P.rest) C.notes.push(`GetTask message: ${JSON.stringify(msg)}`);
  },

  // 13. Pause; task A; RunTask B while paused; resume: A after resume.
  async 13(P) {
    const r = await P.receiver();
    const q = await P.pausedQueue(13);
    await P.client.createTask({parent: q.name, task: {httpRequest: {url: `${r.url}/a`}}});
    await sleep(1000);
    eq(r.requests.length, 0, 'requests while paused (after 1 s)');
    const [b] = await P.client.createTask({parent: q.name, task: {httpRequest: {url: `${r.url}/b`}}});
    await P.client.runTask({name: b.name});
    await r.waitFor(1, {filter: (x) => x.path === '/b'});
    await sleep(300);
    const early = r.requests.filter((x) => x.path !== '/b');
    check(early.length === 0, `while paused the receiver got ${early.map((x) => x.path).join(', ')}`);
    const resumedAt = now();
    await P.client.resumeQueue({name: q.name});
    const [a] = await r.waitFor(1, {filter: (x) => x.path === '/a'});
    check(a.t >= resumedAt, 'task A arrived before the resume call');
    eq(r.requests.filter((x) => x.path === '/b').length, 1, 'deliveries of B');
  },

  // 14. Rate 1/s, burst 1, concurrency 1; 4 tasks held 0.2 s each.
  async 14(P, C) {
    const r = await P.receiver(() => ({status: 200, delayMs: 200}));
    const q = await P.createQueue(14, {rateLimits: {maxDispatchesPerSecond: 1, maxConcurrentDispatches: 1}});
    eq(q.rateLimits?.maxBurstSize, 1, 'maxBurstSize at rate 1');
    await P.client.pauseQueue({name: q.name});
    for (let i = 0; i < 4; i++) await P.client.createTask({parent: q.name, task: {httpRequest: {url: `${r.url}/s14/${i}`}}});
    await P.client.resumeQueue({name: q.name});
    const seen = await r.waitFor(4);
    const gaps = seen.slice(1).map((x, i) => (x.t - seen[i].t) / 1000);
    gaps.forEach((g, i) => check(g >= 1 - TOL_S, `arrivals ${i + 1}→${i + 2} ${g.toFixed(3)} s apart (expected ≥ 0.97 s); gaps ${gaps.map((x) => x.toFixed(3)).join(', ')}`));
    eq(r.maxInflight, 1, 'max requests in flight at the receiver');
    C.notes.push(`gaps ${gaps.map((g) => g.toFixed(3)).join(', ')} s`);
  },

  // 15. PurgeQueue: purge_time set; only the task created afterwards is listed.
  async 15(P) {
    const r = await P.receiver();
    const q = await P.pausedQueue(15);
    for (let i = 0; i < 3; i++) await P.client.createTask({parent: q.name, task: {httpRequest: {url: `${r.url}/s15/${i}`}}});
    const [pq] = await P.client.purgeQueue({name: q.name});
    check(secs(pq.purgeTime) > 0, `PurgeQueue answer purgeTime: ${JSON.stringify(pq.purgeTime)}`);
    const [after] = await P.client.createTask({parent: q.name, task: {httpRequest: {url: `${r.url}/s15/after`}}});
    const [tasks] = await P.client.listTasks({parent: q.name});
    eq(JSON.stringify(tasks.map((t) => t.name)), JSON.stringify([after.name]), 'ListTasks after the purge');
  },

  // 16. ListTasks page_size 2 over 5 tasks: pages 2, 2, 1.
  async 16(P) {
    const r = await P.receiver();
    const q = await P.pausedQueue(16);
    for (let i = 0; i < 5; i++) await P.client.createTask({parent: q.name, task: {httpRequest: {url: `${r.url}/s16/${i}`}}});
    const sizes = [];
    const tokens = [];
    const names = new Set();
    let pageToken = '';
    for (let page = 0; page < 4; page++) {
      const [tasks, , resp] = await P.client.listTasks({parent: q.name, pageSize: 2, pageToken}, {autoPaginate: false});
      sizes.push(tasks.length);
      tasks.forEach((t) => names.add(t.name));
      tokens.push(resp?.nextPageToken ?? '');
      pageToken = resp?.nextPageToken ?? '';
      if (!pageToken) break;
    }
    eq(JSON.stringify(sizes), '[2,2,1]', 'page sizes');
    check(tokens[0] && tokens[1], `the first two next_page_tokens must be non-empty: ${JSON.stringify(tokens)}`);
    eq(tokens[2], '', 'the last next_page_token');
    eq(names.size, 5, 'distinct tasks over the pages');
  },

  // 17. RunTask on a task scheduled 1 h ahead.
  async 17(P) {
    const r = await P.receiver();
    const q = await P.createQueue(17);
    const [t] = await P.client.createTask({
      parent: q.name,
      task: {scheduleTime: {seconds: nowSeconds() + 3600}, httpRequest: {url: `${r.url}/s17`}},
    });
    const [ran] = await P.client.runTask({name: t.name});
    eq(ran.dispatchCount, 1, 'RunTask answer dispatchCount');
    eq(ran.responseCount ?? 0, 0, 'RunTask answer responseCount');
    check(secs(ran.lastAttempt?.dispatchTime) > 0, `RunTask answer lastAttempt.dispatchTime: ${JSON.stringify(ran.lastAttempt)}`);
    check(!ran.lastAttempt?.responseTime, `RunTask answer lastAttempt.responseTime should be unset: ${JSON.stringify(ran.lastAttempt?.responseTime)}`);
    check(!ran.lastAttempt?.responseStatus, `RunTask answer lastAttempt.responseStatus should be unset: ${JSON.stringify(ran.lastAttempt?.responseStatus)}`);
    await r.waitFor(1, {filter: (x) => x.path === '/s17'});
  },

  async 18(P) {
    return {
      status: 'n/a',
      note: `@google-cloud/tasks ${V.tasks} has no BatchCreateTasks (its vendored v2 protos predate the batch RPCs; client.batchCreateTasks is ${typeof P.client.batchCreateTasks})`,
    };
  },

  async 19(P) {
    return {
      status: 'n/a',
      note: P.rest
        ? `rust-rest only (fake server sending an error body without "status"); @google-cloud/tasks ${V.tasks} REST fallback never decodes the error body (gaxios rejects non-2xx first: a raw GaxiosError with the HTTP status)`
        : 'rust-rest only (fake server sending a REST error body without "status"); gRPC errors carry grpc-status, not a JSON body',
    };
  },

  // 20. CreateTask validation: INVALID_ARGUMENT each.
  async 20(P, C) {
    const r = await P.receiver();
    const q = await P.pausedQueue(20);
    const url = `${r.url}/s20`;
    const cases = [
      ['(a) GET with a body', {httpRequest: {httpMethod: 'GET', url, body: Buffer.from('x')}}],
      ['(b) url ftp://x', {httpRequest: {url: 'ftp://x'}}],
      ['(c) dispatch_deadline 5 s', {dispatchDeadline: dur(5), httpRequest: {url}}],
      ['(d) schedule_time now + 31 d', {scheduleTime: {seconds: nowSeconds() + 31 * 86400}, httpRequest: {url}}],
    ];
    const msgs = [];
    for (const [what, task] of cases) {
      const m = await C.expectError(what, () => P.client.createTask({parent: q.name, task}), 'INVALID_ARGUMENT');
      msgs.push(`${what.split(' ')[0]} ${JSON.stringify(m)}`);
    }
    if (!P.rest) C.notes.push(`messages: ${msgs.join(', ')}`);
  },
};

// ---------------------------------------------------------------------------------------------
// Running

async function runScenario(P, n) {
  const C = new Ctx(P);
  let timer;
  try {
    const out = await Promise.race([
      scenarios[n](P, C),
      new Promise((_, rej) => {
        timer = setTimeout(() => rej(new Failure(`scenario did not finish within ${SCENARIO_TIMEOUT_MS / 1000}s`)), SCENARIO_TIMEOUT_MS);
      }),
    ]);
    return out ?? C.result();
  } catch (e) {
    const msg = e instanceof Failure ? e.message : `${e?.constructor?.name ?? 'Error'}: ${e?.message ?? e}${e?.code !== undefined ? ` (code ${e.code})` : ''}`;
    return {status: 'fail', note: msg};
  } finally {
    clearTimeout(timer);
  }
}

async function runPair(P) {
  const results = {};
  const t0 = now();
  // Scenario 10 waits ≥ 15 s: start it first, check it last.
  const s10 = runScenario(P, 10);
  for (const n of SCENARIOS) {
    if (n === 10) continue;
    results[n] = await runScenario(P, n);
  }
  results[10] = await s10;
  P.elapsed = (now() - t0) / 1000;
  const ordered = {};
  for (const n of SCENARIOS) ordered[String(n)] = results[n];
  return ordered;
}

async function main() {
  const watchdog = setTimeout(() => {
    console.error(`checklist: watchdog: no result within ${WATCHDOG_MS / 1000}s`);
    process.exit(2);
  }, WATCHDOG_MS);
  watchdog.unref();

  const server = new StratusServer('checklist');
  const pairs = [];
  let exit = 0;
  try {
    await server.start();
    pairs.push(new Pair('node-grpc', server), new Pair('node-rest', server));
    const all = await Promise.all(pairs.map((P) => runPair(P)));
    const outDir = process.env.STRATUS_COMPAT_RESULTS;
    if (outDir) fs.mkdirSync(outDir, {recursive: true});
    pairs.forEach((P, i) => {
      const results = all[i];
      if (outDir) {
        fs.writeFileSync(path.join(outDir, `${P.id}.json`), JSON.stringify({pair: P.id, client: P.clientLabel, results}, null, 2) + '\n');
      }
      const count = (s) => Object.values(results).filter((r) => r.status === s).length;
      console.log(`${P.id}: ${count('pass')} pass, ${count('limitation')} limitation, ${count('n/a')} n/a, ${count('fail')} fail (${P.elapsed.toFixed(1)} s) [${P.clientLabel}]`);
      for (const [n, r] of Object.entries(results)) {
        if (r.status === 'fail' || (process.env.VERBOSE && r.status !== 'pass')) console.log(`  ${n} ${r.status}: ${r.note}`);
      }
      if (count('fail') > 0) exit = 1;
    });
    if (exit) console.log(`--- stratus log (last lines) ---\n${server.logTail(30)}`);
  } catch (e) {
    console.error(`checklist: harness error: ${e?.stack ?? e}`);
    exit = 2;
  } finally {
    await Promise.allSettled(pairs.map((P) => P.close()));
    await server.stop();
    server.cleanup();
  }
  process.exit(exit);
}

main();

// Harness shared by checklist.mjs and migration.mjs: one real `stratus serve` child process,
// HTTP receivers on 127.0.0.1, bounded polls, and the two client configurations of the
// official @google-cloud/tasks Node client (spec /work/shared/cloud-tasks-api.md §9).
//
// Environment:
//   STRATUS_BIN   path of the server binary (default: <repo>/target/debug/stratus)

import {spawn} from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(HERE, '..', '..');

// Everything is on loopback: never route it through a proxy from the environment
// (gaxios and grpc-js both read *_proxy variables). Set before any client is built.
for (const v of ['NO_PROXY', 'no_proxy']) {
  process.env[v] = [process.env[v], '127.0.0.1', 'localhost'].filter(Boolean).join(',');
}

// Ctrl-C or a kill of this driver still runs the 'exit' hooks (which kill the server).
process.once('SIGINT', () => process.exit(130));
process.once('SIGTERM', () => process.exit(143));

const STARTUP_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 10_000;
export const POLL_TIMEOUT_MS = 30_000;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const now = () => performance.now();

/** A port that was free a moment ago (bind port 0 on loopback, read it, release it). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const {port} = s.address();
      s.close(() => resolve(port));
    });
  });
}

function stratusBin() {
  const raw = process.env.STRATUS_BIN || 'target/debug/stratus';
  return path.isAbsolute(raw) ? raw : path.join(REPO_ROOT, raw);
}

function tail(file, lines = 40) {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Letters and digits, for unique resource ids. */
export function rand(n = 8) {
  const abc = 'abcdefghijklmnopqrstuvwxyz0123456789';
  let s = '';
  for (let i = 0; i < n; i++) s += abc[Math.floor(Math.random() * abc.length)];
  return s;
}

/**
 * One `stratus serve --listen 127.0.0.1:<port> --data-dir <tmp>` child with default windows.
 * stop() is SIGTERM, then SIGKILL after 10 s; a process 'exit' hook kills it as a last resort.
 */
export class StratusServer {
  constructor(label) {
    this.label = label;
    this.tmp = fs.mkdtempSync(path.join(os.tmpdir(), `stratus-node-${label}-`));
    this.logPath = path.join(this.tmp, 'server.log');
    this.proc = null;
    this.port = 0;
    this.url = '';
    this._exitHook = () => {
      if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
        try {
          this.proc.kill('SIGKILL');
        } catch {
          /* already gone */
        }
      }
      this.cleanup();
    };
  }

  async start() {
    const bin = stratusBin();
    if (!fs.existsSync(bin)) {
      throw new Error(`stratus binary not found at ${bin}; build it (cargo build -p stratus) or set STRATUS_BIN`);
    }
    this.port = await freePort();
    this.url = `http://127.0.0.1:${this.port}`;
    const args = ['serve', '--listen', `127.0.0.1:${this.port}`, '--data-dir', path.join(this.tmp, 'data')];
    const log = fs.openSync(this.logPath, 'w');
    this.proc = spawn(bin, args, {cwd: this.tmp, stdio: ['ignore', log, log]});
    fs.closeSync(log);
    this.exited = new Promise((resolve) => this.proc.once('exit', (code, sig) => resolve({code, sig})));
    process.on('exit', this._exitHook);
    const deadline = now() + STARTUP_TIMEOUT_MS;
    let last = 'no answer yet';
    while (now() < deadline) {
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) {
        throw new Error(`stratus exited (${this.proc.exitCode ?? this.proc.signalCode}) during startup: ${bin} ${args.join(' ')}\n${tail(this.logPath)}`);
      }
      try {
        const r = await fetch(`${this.url}/healthz`, {signal: AbortSignal.timeout(1000)});
        if (r.status === 200) return this;
        last = `/healthz answered ${r.status}`;
      } catch (e) {
        last = String(e.cause ?? e);
      }
      await sleep(100);
    }
    throw new Error(`stratus did not answer GET /healthz with 200 within ${STARTUP_TIMEOUT_MS / 1000}s (${last})\n${tail(this.logPath)}`);
  }

  async stop() {
    if (!this.proc) return;
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGTERM');
      const t = setTimeout(() => this.proc.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await this.exited;
      clearTimeout(t);
    }
    process.removeListener('exit', this._exitHook);
  }

  logTail(lines = 40) {
    return tail(this.logPath, lines);
  }

  cleanup() {
    fs.rmSync(this.tmp, {recursive: true, force: true});
  }
}

/**
 * An HTTP/1.1 server on 127.0.0.1 recording every request. `handler(rec, index)` returns
 * {status, delayMs} (default 200 at once). Records carry the arrival time (performance.now()).
 */
export class Receiver {
  constructor(handler = () => ({status: 200})) {
    this.handler = handler;
    this.requests = [];
    this.inflight = 0;
    this.maxInflight = 0;
    this.server = http.createServer((req, res) => {
      const t = now();
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('error', () => {});
      res.on('error', () => {});
      req.on('end', async () => {
        const rec = {t, method: req.method, path: req.url, headers: req.headers, body: Buffer.concat(chunks)};
        const index = this.requests.push(rec) - 1;
        this.inflight++;
        this.maxInflight = Math.max(this.maxInflight, this.inflight);
        let status = 500;
        try {
          const answer = (await this.handler(rec, index)) ?? {};
          if (answer.delayMs) await sleep(answer.delayMs);
          status = answer.status ?? 200;
        } catch (e) {
          rec.handlerError = String(e);
        } finally {
          this.inflight--;
        }
        rec.answered = now();
        rec.status = status;
        if (!res.destroyed) res.writeHead(status, {'content-length': '0'}).end();
      });
    });
  }

  async start() {
    await new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', resolve);
    });
    this.url = `http://127.0.0.1:${this.server.address().port}`;
    return this;
  }

  /** Waits (bounded) until `n` requests matching `filter` arrived; returns them. */
  async waitFor(n, {timeoutMs = POLL_TIMEOUT_MS, filter = () => true} = {}) {
    const deadline = now() + timeoutMs;
    for (;;) {
      const got = this.requests.filter(filter);
      if (got.length >= n) return got;
      if (now() > deadline) throw new Error(`receiver saw ${got.length} request(s) within ${timeoutMs / 1000}s, expected ${n}`);
      await sleep(20);
    }
  }

  close() {
    this.server.closeAllConnections();
    this.server.close();
  }
}

/** Polls `fn` until it returns a truthy value (bounded); returns that value. */
export async function poll(fn, what, {timeoutMs = POLL_TIMEOUT_MS, everyMs = 50} = {}) {
  const deadline = now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}; last value ${JSON.stringify(last)}`);
    await sleep(everyMs);
  }
}

/** Versions of the installed client stack, read from node_modules. */
export function versions() {
  const v = (p) => {
    try {
      return JSON.parse(fs.readFileSync(path.join(HERE, 'node_modules', p, 'package.json'), 'utf8')).version;
    } catch {
      return '?';
    }
  };
  return {
    tasks: v('@google-cloud/tasks'),
    gax: v('google-gax'),
    grpc: v('@grpc/grpc-js'),
    auth: v('google-auth-library'),
    gaxios: v('gaxios'),
  };
}

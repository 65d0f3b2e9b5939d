// API tokens with the official Node client over gRPC and TLS, exactly as docs/security.md shows:
// call credentials from a metadata generator combined with the TLS channel credentials
// (grpc-js attaches call credentials to secure channels only). A real `stratus serve` with a
// certificate made here (openssl) and tokens made by `stratus tokens create`.
//
// Prints one line per check and ends with "auth checks: N passed, M failed"; exit 0 only when
// every check passed.

import {execFileSync, spawn} from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';

import {CloudTasksClient} from '@google-cloud/tasks';
import * as grpc from '@grpc/grpc-js';
import {PassThroughClient} from 'google-auth-library';

import {REPO_ROOT, freePort, sleep} from './lib.mjs';

const bin = (() => {
  const raw = process.env.STRATUS_BIN || 'target/debug/stratus';
  return path.isAbsolute(raw) ? raw : path.join(REPO_ROOT, raw);
})();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'stratus-node-auth-'));
const cert = path.join(tmp, 'cert.pem');
const key = path.join(tmp, 'key.pem');
const cfg = path.join(tmp, 'stratus.toml');
execFileSync('openssl', [
  'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
  '-subj', '/CN=stratus-test', '-addext', 'subjectAltName=IP:127.0.0.1',
  '-keyout', key, '-out', cert,
], {stdio: 'ignore'});
const token = (project, role, name) =>
  execFileSync(bin, ['tokens', 'create', '--project', project, '--role', role, '--name', name, '--config', cfg], {
    stdio: ['ignore', 'pipe', 'ignore'],
  })
    .toString()
    .trim();
const ADMIN = token('node-a', 'admin', 'node-a-admin');
const VIEWER = token('node-a', 'viewer', 'node-a-viewer');
const OTHER = token('node-b', 'admin', 'node-b-admin');
const ca = fs.readFileSync(cert);

const port = await freePort();
const log = fs.openSync(path.join(tmp, 'server.log'), 'w');
const proc = spawn(
  bin,
  ['serve', '--listen', `127.0.0.1:${port}`, '--data-dir', path.join(tmp, 'data'), '--config', cfg,
    '--tls-cert', cert, '--tls-key', key, '--no-dispatch'],
  {stdio: ['ignore', log, log]},
);
process.on('exit', () => proc.exitCode === null && proc.kill('SIGKILL'));

const healthy = () =>
  new Promise((resolve) => {
    const req = https.get({host: '127.0.0.1', port, path: '/healthz', ca, timeout: 1000}, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
  });
for (let i = 0; i < 300 && !(await healthy()); i++) await sleep(100);

/** The client of docs/security.md: TLS channel credentials plus the token as call credentials. */
function client(tok) {
  const tls = grpc.credentials.createSsl(ca);
  const sslCreds = tok
    ? grpc.credentials.combineChannelCredentials(
        tls,
        grpc.credentials.createFromMetadataGenerator((_, cb) => {
          const md = new grpc.Metadata();
          md.add('authorization', `Bearer ${tok}`);
          cb(null, md);
        }),
      )
    : tls;
  return new CloudTasksClient({apiEndpoint: '127.0.0.1', port, sslCreds, authClient: new PassThroughClient()});
}

let passed = 0;
let failed = 0;
async function check(what, fn) {
  try {
    await fn();
    passed++;
    console.log(`auth: ok: ${what}`);
  } catch (e) {
    failed++;
    console.log(`auth: FAIL: ${what}: ${e?.stack ?? e}`);
  }
}
async function expectCode(code, fn) {
  try {
    await fn();
  } catch (e) {
    if (e.code === code) return;
    throw new Error(`expected gRPC code ${code}, got ${e.code}: ${e.message}`);
  }
  throw new Error(`expected gRPC code ${code}, the call succeeded`);
}

const LOC = 'projects/node-a/locations/local';
const QUEUE = `${LOC}/queues/jobs`;
const task = {httpRequest: {url: 'http://127.0.0.1:9/x', httpMethod: 'POST'}};

await check('an admin token creates a queue and a task', async () => {
  const c = client(ADMIN);
  const [q] = await c.createQueue({parent: LOC, queue: {name: QUEUE}});
  if (q.name !== QUEUE) throw new Error(q.name);
  await c.createTask({parent: QUEUE, task});
  await c.close();
});
await check('a viewer token reads but cannot create (PERMISSION_DENIED)', async () => {
  const c = client(VIEWER);
  const [tasks] = await c.listTasks({parent: QUEUE});
  if (tasks.length !== 1) throw new Error(`${tasks.length} tasks`);
  await expectCode(7, () => c.createTask({parent: QUEUE, task}));
  await c.close();
});
await check("another project's token is refused (PERMISSION_DENIED)", async () => {
  const c = client(OTHER);
  await expectCode(7, () => c.getQueue({name: QUEUE}));
  await c.close();
});
await check('no token is UNAUTHENTICATED', async () => {
  const c = client(null);
  await expectCode(16, () => c.listQueues({parent: LOC}));
  await c.close();
});
await check('an unknown token is UNAUTHENTICATED', async () => {
  const c = client('stratus_not-a-token');
  await expectCode(16, () => c.listQueues({parent: LOC}));
  await c.close();
});

proc.kill('SIGTERM');
await new Promise((r) => (proc.exitCode !== null ? r() : proc.once('exit', r)));
if (failed) console.log(fs.readFileSync(path.join(tmp, 'server.log'), 'utf8').split('\n').slice(-30).join('\n'));
fs.rmSync(tmp, {recursive: true, force: true});
console.log(`auth checks: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);

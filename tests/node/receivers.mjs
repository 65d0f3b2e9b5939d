// Proof of origin end to end with the Express middleware users copy
// (examples/receivers/node/stratus-verify.mjs, imported as is): a real `stratus serve` with
// `[[receiver_auth]]` rules dispatches tasks created through the official client to an Express
// receiver on 127.0.0.1 that checks the HMAC signature, the shared-secret header and the OIDC
// token; forged, tampered and replayed requests sent straight to the receiver must get 401.
//
// Prints one line per check and ends with "receiver checks: N passed, M failed"; exit 0 only
// when every check passed.

import fs from 'node:fs';
import {register} from 'node:module';
import path from 'node:path';

import {CloudTasksClient} from '@google-cloud/tasks';
import express from 'express';
import {PassThroughClient} from 'google-auth-library';

import {REPO_ROOT, StratusServer, freePort, poll, rand, sleep} from './lib.mjs';

// The example lives outside this package: let its bare imports (jose) resolve from here, the
// way they resolve from a user's own node_modules.
register(
  'data:text/javascript,' +
    encodeURIComponent(`
      const here = ${JSON.stringify(new URL('./', import.meta.url).href)};
      export async function resolve(specifier, context, next) {
        try {
          return await next(specifier, context);
        } catch (e) {
          if (e?.code !== 'ERR_MODULE_NOT_FOUND' || /^(\\.|\\/|[a-z]+:)/.test(specifier)) throw e;
          return next(specifier, {...context, parentURL: here});
        }
      }`),
);
const {SIGNATURE_HEADER, signStratus, verifyStratusOidc, verifyStratusSharedSecret, verifyStratusSignature} = await import(
  path.join(REPO_ROOT, 'examples', 'receivers', 'node', 'stratus-verify.mjs')
);

const NEW_KEY = 'node-rotation-new-key-91ab';
const OLD_KEY = 'node-rotation-old-key-27cd';
const OIDC_KEY = 'node-oidc-queue-key-55ef';
const SECRET_HEADER = 'X-Recv-Secret';
const SECRET = 'node-shared-secret-8a7b6c';
const PROJECT = 'recv-node';
const LOCATION = 'local';
const SIGNED_QUEUE = `projects/${PROJECT}/locations/${LOCATION}/queues/signed`;
const OIDC_PROJECT = 'recv-node-oidc';
const EMAIL = 'worker@recv-node.iam.gserviceaccount.com';
const AUDIENCE = 'https://api.example/tasks';

const CONFIG = `
[[receiver_auth]]
queue = "${SIGNED_QUEUE}"
secret_header = "${SECRET_HEADER}"
secret = "${SECRET}"
hmac_keys = ["${NEW_KEY}", "${OLD_KEY}"]

[[receiver_auth]]
queue = "projects/${OIDC_PROJECT}/*"
hmac_keys = ["${OIDC_KEY}"]
`;

let passed = 0;
let failed = 0;
async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`receivers: ok: ${name}`);
  } catch (e) {
    failed++;
    console.log(`receivers: FAIL: ${name}: ${e?.message ?? e}`);
  }
}
function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

/** The Express receiver; records what each route accepted. */
async function startApp(issuer) {
  const accepted = [];
  const app = express();
  const record = (route) => (req, res) => {
    accepted.push({route, headers: req.headers, body: Buffer.from(req.body ?? ''), stratus: req.stratus});
    res.status(200).json({ok: true});
  };
  const raw = express.raw({type: () => true});
  const secret = verifyStratusSharedSecret({header: SECRET_HEADER, secret: SECRET});
  // The current key only (already rotated), and the previous key only (not yet).
  app.post('/new', raw, verifyStratusSignature({keys: [NEW_KEY]}), secret, record('new'));
  app.post('/old', raw, verifyStratusSignature({keys: [OLD_KEY]}), secret, record('old'));
  app.post(
    '/oidc',
    raw,
    verifyStratusSignature({keys: [OIDC_KEY]}),
    verifyStratusOidc({issuer, audience: AUDIENCE, allowedEmails: [EMAIL]}),
    record('oidc'),
  );
  app.post('/other-audience', raw, verifyStratusOidc({issuer, audience: 'https://other.example'}), record('other-audience'));
  const port = await freePort();
  const server = await new Promise((resolve, reject) => {
    const s = app.listen(port, '127.0.0.1', (err) => (err ? reject(err) : resolve(s)));
  });
  return {
    url: `http://127.0.0.1:${port}`,
    accepted,
    waitFor: (route) => poll(() => accepted.find((r) => r.route === route), `an accepted request on /${route}`, {timeoutMs: 20_000}),
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

/** A request sent straight to the receiver (an attacker's copy of a dispatch). */
async function send(app, route, headers, body) {
  const h = Object.fromEntries(Object.entries(headers).filter(([k]) => !['host', 'content-length', 'connection'].includes(k)));
  const r = await fetch(`${app.url}/${route}`, {method: 'POST', headers: h, body, signal: AbortSignal.timeout(5000)});
  return r.status;
}

const sig = (key, t, body) => `t=${t},v1=${signStratus(key, t, body)}`;
const withHeader = (headers, name, value) => ({...headers, [name.toLowerCase()]: value});
const without = (headers, name) => Object.fromEntries(Object.entries(headers).filter(([k]) => k !== name.toLowerCase()));

async function main() {
  const watchdog = setTimeout(() => {
    console.error('receivers: watchdog: no result within 90 s');
    process.exit(2);
  }, 90_000);
  watchdog.unref();

  const server = new StratusServer('receivers');
  const cfg = path.join(server.tmp, 'stratus.toml');
  fs.writeFileSync(cfg, CONFIG);
  process.env.STRATUS_CONFIG = cfg; // `stratus serve` reads --config from it
  let app;
  let client;
  try {
    await server.start();
    app = await startApp(server.url);
    client = new CloudTasksClient({
      apiEndpoint: '127.0.0.1',
      port: server.port,
      protocol: 'http',
      fallback: 'rest',
      authClient: new PassThroughClient(),
    });

    // --- HMAC + shared secret, key rotation ---
    const body = Buffer.from(JSON.stringify({order: 42, note: 'héllo'}));
    await client.createQueue({parent: `projects/${PROJECT}/locations/${LOCATION}`, queue: {name: SIGNED_QUEUE}});
    // The task tries to pre-set both proofs: Stratus replaces them.
    const forged = {[SECRET_HEADER]: 'guess', [SIGNATURE_HEADER]: 't=1,v1=00', 'Content-Type': 'application/json'};
    for (const route of ['new', 'old']) {
      await client.createTask({parent: SIGNED_QUEUE, task: {httpRequest: {httpMethod: 'POST', url: `${app.url}/${route}`, headers: forged, body: body.toString('base64')}}});
    }
    let nw;
    await check('a dispatch signed with the current key is accepted by a receiver holding it', async () => {
      nw = await app.waitFor('new');
      assert(nw.body.equals(body), 'body differs');
      assert(nw.headers[SECRET_HEADER.toLowerCase()] === SECRET, 'shared secret header not replaced');
      const t = nw.stratus.t;
      assert(Math.abs(Date.now() / 1000 - t) < 60, `timestamp ${t} is not now`);
      const want = `t=${t},v1=${signStratus(NEW_KEY, t, body)},v1=${signStratus(OLD_KEY, t, body)}`;
      assert(nw.headers['x-stratus-signature'] === want, `signature header ${nw.headers['x-stratus-signature']} != ${want}`);
    });
    await check('key rotation: a receiver holding only the second key accepts', async () => {
      const old = await app.waitFor('old');
      assert(old.body.equals(body), 'body differs');
    });
    if (nw) {
      const h = nw.headers;
      const now = Math.floor(Date.now() / 1000);
      await check('a fresh request signed with the right key is accepted (sanity)', async () => {
        const s = await send(app, 'new', withHeader(h, SIGNATURE_HEADER, sig(NEW_KEY, now - 250, body)), body);
        assert(s === 200, `status ${s}`);
      });
      const cases = {
        'tampered body': [h, Buffer.from(body.toString().replace('42', '43'))],
        'replay older than 5 minutes (re-signed, old t)': [withHeader(h, SIGNATURE_HEADER, sig(NEW_KEY, now - 301, body)), body],
        'timestamp more than 5 minutes ahead': [withHeader(h, SIGNATURE_HEADER, sig(NEW_KEY, now + 330, body)), body],
        'signature by an unknown key': [withHeader(h, SIGNATURE_HEADER, sig('someone-elses-key-123456', now, body)), body],
        'missing signature header': [without(h, SIGNATURE_HEADER), body],
        'malformed signature header': [withHeader(h, SIGNATURE_HEADER, 'v1=abc'), body],
        'wrong shared secret': [withHeader(withHeader(h, SIGNATURE_HEADER, sig(NEW_KEY, now, body)), SECRET_HEADER, 'guess'), body],
      };
      for (const [what, [headers, b]] of Object.entries(cases)) {
        await check(`rejected with 401: ${what}`, async () => {
          const s = await send(app, 'new', headers, b);
          assert(s === 401, `status ${s}`);
        });
      }
    }

    // --- OIDC token + signature ---
    const oidcParent = `projects/${OIDC_PROJECT}/locations/${LOCATION}`;
    const oidcQueue = `${oidcParent}/queues/q-${rand(6)}`;
    await client.createQueue({parent: oidcParent, queue: {name: oidcQueue}});
    const oidcBody = Buffer.from('{"user": 7}');
    for (const route of ['oidc', 'other-audience']) {
      await client.createTask({
        parent: oidcQueue,
        task: {httpRequest: {httpMethod: 'POST', url: `${app.url}/${route}`, body: oidcBody.toString('base64'), oidcToken: {serviceAccountEmail: EMAIL, audience: AUDIENCE}}},
      });
    }
    let oidc;
    await check('a dispatch with an OIDC token and a signature is accepted', async () => {
      oidc = await app.waitFor('oidc');
      assert(oidc.stratus.claims.email === EMAIL && oidc.stratus.claims.aud === AUDIENCE, `claims ${JSON.stringify(oidc.stratus.claims)}`);
      assert(oidc.headers['x-stratus-signature'] === sig(OIDC_KEY, oidc.stratus.t, oidcBody), 'signature header');
      await sleep(1000);
      assert(!app.accepted.some((r) => r.route === 'other-audience'), 'a token for another audience was accepted');
    });
    if (oidc) {
      const h = oidc.headers;
      const [head, payload, s] = h.authorization.slice('Bearer '.length).split('.');
      const flipped = s.slice(0, -2) + (s.slice(-2) !== 'AA' ? 'AA' : 'BB');
      const cases = {
        'OIDC token for another audience': ['other-audience', h, oidcBody],
        'tampered OIDC token': ['oidc', {...h, authorization: `Bearer ${head}.${payload}.${flipped}`}, oidcBody],
        'no OIDC token': ['oidc', without(h, 'authorization'), oidcBody],
        'tampered body with a valid token': ['oidc', h, Buffer.from('{"user": 8}')],
      };
      for (const [what, [route, headers, b]] of Object.entries(cases)) {
        await check(`rejected with 401: ${what}`, async () => {
          const st = await send(app, route, headers, b);
          assert(st === 401, `status ${st}`);
        });
      }
    }
    await check('the server log shows no secret', async () => {
      const log = fs.readFileSync(server.logPath, 'utf8');
      for (const secret of [SECRET, NEW_KEY, OLD_KEY, OIDC_KEY]) assert(!log.includes(secret), 'a secret is in the log');
    });
  } catch (e) {
    failed++;
    console.log(`receivers: FAIL: harness error: ${e?.stack ?? e}`);
  } finally {
    await client?.close().catch(() => {});
    app?.close();
    await server.stop();
    if (failed) console.log(`--- stratus log (last lines) ---\n${server.logTail(30)}`);
    server.cleanup();
  }
  console.log(`receiver checks: ${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main();

// Verify that a request really comes from Stratus, in an Express receiver
// (examples/receivers/README.md).
//
// - verifyStratusSignature({keys}): the `X-Stratus-Signature` header, an HMAC-SHA256 over
//   `"<t>." + body` keyed with a key configured in `[[receiver_auth]] hmac_keys`. Rejects a
//   missing or malformed header, a signature by no key you hold, a changed body, and a timestamp
//   more than 5 minutes old (a replay) or more than 5 minutes ahead.
// - verifyStratusSharedSecret({header, secret}): the static `secret_header` of the same rule.
// - verifyStratusOidc({issuer, audience}): the task's OIDC token (`Authorization: Bearer …`),
//   checked with jose against the keys Stratus publishes (`<issuer>/.well-known/openid-configuration`
//   → `jwks_uri`).
//
// Each answers 401 when its proof fails. The signature covers the raw body, so mount
// `express.raw({type: () => true})` before it (every content type, also none: a task's body may
// come without Content-Type; req.body is then a Buffer, JSON.parse it after), or
// keep the bytes with a `verify` hook: `express.json({verify: (req, _res, buf) => { req.rawBody = buf; }})`.
//
//   npm install express jose
//
//   import express from 'express';
//   import {verifyStratusOidc, verifyStratusSignature} from './stratus-verify.mjs';
//
//   const app = express();
//   app.post('/tasks/send-email',
//     express.raw({type: () => true}),
//     verifyStratusSignature({keys: [process.env.STRATUS_HMAC_KEY]}),
//     verifyStratusOidc({issuer: 'https://stratus.internal:8123', audience: 'https://api.example/tasks'}),
//     (req, res) => {
//       const payload = JSON.parse(req.body.toString('utf8'));
//       // req.stratus = {t, claims}
//       res.sendStatus(200);
//     });
//
// The signature does not stop a replay *within* the 5-minute window: de-duplicate on
// `X-CloudTasks-TaskName` + `X-CloudTasks-TaskRetryCount` for that long (a retry of the same task
// carries a higher retry count and a fresh signature).

import {createHmac, timingSafeEqual} from 'node:crypto';

import {createRemoteJWKSet, jwtVerify} from 'jose';

export const SIGNATURE_HEADER = 'X-Stratus-Signature';
export const DEFAULT_TOLERANCE_SECONDS = 300;

/** The request does not carry a valid, fresh proof of origin. */
export class StratusVerificationError extends Error {}

/** The `v1` value Stratus sends: hex HMAC-SHA256 of `"<t>." + body` keyed with `key`. */
export function signStratus(key, t, body) {
  return createHmac('sha256', key).update(`${t}.`).update(body).digest('hex');
}

/** `t=<unix seconds>,v1=<hex>[,v1=<hex>]` as {t, signatures}; unknown schemes are skipped. */
export function parseSignatureHeader(header) {
  if (!header) throw new StratusVerificationError(`missing ${SIGNATURE_HEADER} header`);
  let t;
  const signatures = [];
  for (const part of String(header).split(',')) {
    const i = part.indexOf('=');
    if (i < 0) throw new StratusVerificationError(`malformed ${SIGNATURE_HEADER} header`);
    const name = part.slice(0, i).trim();
    const value = part.slice(i + 1).trim();
    if (name === 't') {
      if (t !== undefined || !/^[0-9]+$/.test(value)) throw new StratusVerificationError(`malformed timestamp in ${SIGNATURE_HEADER}`);
      t = Number(value);
    } else if (name === 'v1') {
      signatures.push(value);
    }
  }
  if (t === undefined || signatures.length === 0) throw new StratusVerificationError(`${SIGNATURE_HEADER} needs t= and at least one v1=`);
  return {t, signatures};
}

/**
 * Checks a signature header against the raw body (a Buffer); returns its timestamp or throws
 * StratusVerificationError. Some `v1` must equal the HMAC of one of `keys` (compared in constant
 * time) and `t` must be within `toleranceSeconds` of `now` (unix seconds, default: the clock).
 */
export function verifySignatureHeader(header, body, keys, {toleranceSeconds = DEFAULT_TOLERANCE_SECONDS, now = Date.now() / 1000} = {}) {
  if (!keys?.length) throw new TypeError('keys: at least one HMAC key is needed');
  const {t, signatures} = parseSignatureHeader(header);
  if (t < now - toleranceSeconds) throw new StratusVerificationError(`signature timestamp ${t} is older than ${toleranceSeconds} s (replay?)`);
  if (t > now + toleranceSeconds) throw new StratusVerificationError(`signature timestamp ${t} is more than ${toleranceSeconds} s in the future`);
  const expected = keys.map((k) => Buffer.from(signStratus(k, t, body), 'utf8'));
  // Compare every pair (no early exit) so timing does not tell which part matched.
  let ok = false;
  for (const s of signatures) {
    const got = Buffer.from(s, 'utf8');
    for (const want of expected) {
      if (got.length === want.length && timingSafeEqual(got, want)) ok = true;
    }
  }
  if (!ok) throw new StratusVerificationError('no signature matches the body with any configured key');
  return t;
}

/** The raw body bytes, or null when no raw-body parser ran. */
function rawBody(req) {
  if (Buffer.isBuffer(req.rawBody)) return req.rawBody;
  if (Buffer.isBuffer(req.body)) return req.body;
  const hasBody = req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] ?? '0') !== '0';
  if (req.body === undefined && !hasBody) return Buffer.alloc(0);
  return null;
}

function reject(res, err) {
  res.status(401).json({error: err.message});
}

/**
 * Express middleware: 401 unless the request is signed with one of `keys`. Hold the current
 * key; during a rotation Stratus sends one signature per configured key, so a receiver holding
 * either the old or the new key accepts. Sets `req.stratus.t`.
 */
export function verifyStratusSignature({keys, toleranceSeconds = DEFAULT_TOLERANCE_SECONDS}) {
  if (!keys?.length) throw new TypeError('verifyStratusSignature: keys: at least one HMAC key is needed');
  return (req, res, next) => {
    const body = rawBody(req);
    if (body === null) {
      next(new Error("verifyStratusSignature needs the raw body: mount express.raw({type: () => true}) before it, or keep it as req.rawBody in a verify hook"));
      return;
    }
    try {
      const t = verifySignatureHeader(req.get(SIGNATURE_HEADER), body, keys, {toleranceSeconds});
      req.stratus = {...req.stratus, t};
      next();
    } catch (err) {
      if (err instanceof StratusVerificationError) reject(res, err);
      else next(err);
    }
  };
}

/**
 * Express middleware: 401 unless header `header` carries `secret` (constant-time compare).
 * A static secret proves only that the sender knows it: it can be replayed by anyone who saw
 * one request, so use it over TLS only, and prefer verifyStratusSignature.
 */
export function verifyStratusSharedSecret({header, secret}) {
  if (!header || !secret) throw new TypeError('verifyStratusSharedSecret: header and secret are both needed');
  const want = Buffer.from(secret, 'utf8');
  return (req, res, next) => {
    const got = Buffer.from(req.get(header) ?? '', 'utf8');
    if (got.length === want.length && timingSafeEqual(got, want)) next();
    else reject(res, new StratusVerificationError(`missing or wrong ${header} header`));
  };
}

/**
 * Express middleware: 401 unless `Authorization` carries a Stratus OIDC token for `audience`
 * (and, with `allowedEmails`, for one of those service accounts). `issuer` is the Stratus URL (or
 * its `oidc_issuer`); the discovery document is fetched on first use, the keys are cached by
 * jose. Sets `req.stratus.claims`.
 */
export function verifyStratusOidc({issuer, audience, allowedEmails}) {
  if (!issuer || !audience) throw new TypeError('verifyStratusOidc: issuer and audience are both needed');
  let discovered;
  const discover = () => {
    discovered ??= fetch(`${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`)
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`OIDC discovery: HTTP ${r.status}`))))
      .then((d) => ({iss: d.issuer, jwks: createRemoteJWKSet(new URL(d.jwks_uri))}))
      .catch((e) => {
        discovered = undefined; // retry the discovery on the next request
        throw e;
      });
    return discovered;
  };
  return async (req, res, next) => {
    let keys;
    try {
      keys = await discover();
    } catch (err) {
      next(err);
      return;
    }
    const [scheme, token] = (req.get('authorization') ?? '').split(' ');
    if (scheme !== 'Bearer' || !token) {
      reject(res, new StratusVerificationError('missing bearer token'));
      return;
    }
    try {
      const {payload} = await jwtVerify(token, keys.jwks, {issuer: keys.iss, audience, algorithms: ['RS256']});
      if (payload.email_verified !== true) throw new StratusVerificationError('email not verified');
      if (allowedEmails && !allowedEmails.includes(payload.email)) throw new StratusVerificationError(`service account ${payload.email} is not allowed`);
      req.stratus = {...req.stratus, claims: payload};
      next();
    } catch (err) {
      reject(res, err);
    }
  };
}

// A Cloud Tasks HTTP handler written the way a user writes one: plain node:http, a JSON
// payload, and the `Authorization: Bearer <OIDC token>` checked with jose.
//
// The verification is issuer-agnostic: on Google Cloud the issuer is https://accounts.google.com;
// on Stratus it is the server's URL (or its --oidc-issuer). Both publish
// <issuer>/.well-known/openid-configuration with a `jwks_uri`.

import http from 'node:http';
import {createRemoteJWKSet, jwtVerify} from 'jose';

/**
 * Returns `verify(authorizationHeader, audience)`, which resolves to the token's claims
 * (`email` is the service account named in the task) or throws when the token is missing,
 * badly signed, expired, from another issuer or for another audience.
 */
export function oidcVerifier(issuerUrl) {
  let discovered; // {issuer, jwks}, fetched once; JWKS keys are cached and refreshed by jose
  return async function verify(authorization, audience) {
    discovered ??= fetch(`${issuerUrl.replace(/\/$/, '')}/.well-known/openid-configuration`)
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`OIDC discovery: HTTP ${r.status}`))))
      .then((d) => ({issuer: d.issuer, jwks: createRemoteJWKSet(new URL(d.jwks_uri))}))
      .catch((e) => {
        discovered = undefined;
        throw e;
      });
    const {issuer, jwks} = await discovered;
    const [scheme, token] = (authorization ?? '').split(' ');
    if (scheme !== 'Bearer' || !token) throw new Error('missing bearer token');
    const {payload} = await jwtVerify(token, jwks, {issuer, audience});
    return payload;
  };
}

/**
 * The task handler: accepts POSTs whose token is valid for `audience` and was minted for
 * `invoker`, parses the JSON body and hands it to `onTask`; anything else gets 401.
 */
export function taskHandler({issuer, audience, invoker, onTask, onReject = () => {}}) {
  const verify = oidcVerifier(issuer);
  return async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    let claims;
    try {
      claims = await verify(req.headers.authorization, audience);
      if (claims.email !== invoker || claims.email_verified !== true) throw new Error(`unexpected caller ${claims.email}`);
    } catch (err) {
      onReject(err, req);
      res.writeHead(401).end();
      return;
    }
    let payload;
    try {
      payload = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch (err) {
      onReject(err, req);
      res.writeHead(400).end(); // Cloud Tasks retries non-2xx; a real app might answer 2xx to drop it
      return;
    }
    onTask({payload, claims, taskName: req.headers['x-cloudtasks-taskname'], headers: req.headers});
    res.writeHead(200, {'content-type': 'text/plain'}).end('ok');
  };
}

/** Starts the handler on 127.0.0.1:`port`; resolves to the http.Server. */
export function startReceiver(port, options) {
  const server = http.createServer(taskHandler(options));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

// Migration check: an application written exactly like Google's Cloud Tasks Node sample
// (createHttpTaskWithToken) runs unchanged against Stratus; the ONLY Stratus-specific code is
// the client options object. Its receiver (receiver.mjs) decodes the JSON payload and verifies
// the OIDC token with jose against Stratus' published discovery document and JWKS.
//
// Run for both transports: gRPC (grpc-js, insecure channel) and the REST fallback.
// Exit 0 only when, for both, the receiver got the right payload with a valid token and a
// task whose token names another audience was rejected.

import {CloudTasksClient} from '@google-cloud/tasks';
import grpc from '@grpc/grpc-js';
import {PassThroughClient} from 'google-auth-library';

import {StratusServer, freePort, poll, rand} from './lib.mjs';
import {startReceiver} from './receiver.mjs';

// ---------------------------------------------------------------------------------------------
// The user's code (Google sample style). Nothing here knows about Stratus.

async function createHttpTaskWithToken(clientOptions, {project, location, queue, taskId, url, serviceAccountEmail, audience, payload, inSeconds}) {
  const client = new CloudTasksClient(clientOptions);
  try {
    // Construct the fully qualified queue name.
    const parent = client.queuePath(project, location, queue);

    // Construct the request body.
    const task = {
      name: client.taskPath(project, location, queue, taskId),
      scheduleTime: {
        seconds: inSeconds + Date.now() / 1000,
      },
      httpRequest: {
        httpMethod: 'POST',
        url,
        headers: {'Content-Type': 'application/json'},
        body: Buffer.from(JSON.stringify(payload)).toString('base64'),
        oidcToken: {
          serviceAccountEmail,
          audience,
        },
      },
    };

    console.log('Sending task:');
    console.log(task);
    // Send create task request.
    const request = {parent, task};
    const [response] = await client.createTask(request);
    console.log(`Created task ${response.name}`);
    return response;
  } finally {
    await client.close();
  }
}

async function createQueue(clientOptions, {project, location, queue}) {
  const client = new CloudTasksClient(clientOptions);
  try {
    const [response] = await client.createQueue({
      parent: client.locationPath(project, location),
      queue: {name: client.queuePath(project, location, queue)},
    });
    console.log(`Created queue ${response.name}`);
    return response;
  } finally {
    await client.close();
  }
}

async function deleteTask(clientOptions, name) {
  const client = new CloudTasksClient(clientOptions);
  try {
    await client.deleteTask({name});
  } finally {
    await client.close();
  }
}

// ---------------------------------------------------------------------------------------------
// The only Stratus-specific part: how the client reaches the server.

function stratusClientOptions(transport, port) {
  if (transport === 'grpc') {
    return {
      apiEndpoint: '127.0.0.1',
      port,
      sslCreds: grpc.credentials.createInsecure(),
      authClient: new PassThroughClient(),
    };
  }
  return {
    apiEndpoint: '127.0.0.1',
    port,
    protocol: 'http',
    fallback: 'rest',
    authClient: new PassThroughClient(),
  };
}

// ---------------------------------------------------------------------------------------------
// The check

const PROJECT = 'my-project';
const LOCATION = 'us-central1';
const INVOKER = 'invoker@p.iam.gserviceaccount.com';
const quiet = !process.env.VERBOSE;

async function main() {
  const watchdog = setTimeout(() => {
    console.error('migration: watchdog: no result within 90 s');
    process.exit(2);
  }, 90_000);
  watchdog.unref();

  const server = new StratusServer('migration');
  let receiver;
  const failures = [];
  try {
    await server.start();
    const receiverPort = await freePort();
    const serviceUrl = `http://127.0.0.1:${receiverPort}`; // the receiver's own URL is its audience (Cloud Run style)
    const delivered = [];
    const rejected = [];
    receiver = await startReceiver(receiverPort, {
      issuer: server.url, // on Google Cloud: 'https://accounts.google.com'
      audience: serviceUrl,
      invoker: INVOKER,
      onTask: (t) => delivered.push({...t, receivedAt: Date.now() / 1000}),
      onReject: (err, req) => rejected.push({err, taskName: req.headers['x-cloudtasks-taskname']}),
    });

    const origLog = console.log;
    for (const transport of ['grpc', 'rest']) {
      const label = `migration (${transport})`;
      const clientOptions = stratusClientOptions(transport, server.port);
      const queue = `migration-${transport}-${rand(6)}`;
      const payload = {orderId: rand(10), items: [{sku: 'A-1', qty: 2}], note: 'héllo ✓'};
      try {
        if (quiet) console.log = () => {};
        await createQueue(clientOptions, {project: PROJECT, location: LOCATION, queue});
        const createdAt = Date.now() / 1000;
        const good = await createHttpTaskWithToken(clientOptions, {
          project: PROJECT, location: LOCATION, queue, taskId: `order-${rand(8)}`,
          url: `${serviceUrl}/tasks/orders`, serviceAccountEmail: INVOKER, audience: serviceUrl, payload, inSeconds: 1,
        });
        const bad = await createHttpTaskWithToken(clientOptions, {
          project: PROJECT, location: LOCATION, queue, taskId: `wrong-aud-${rand(8)}`,
          url: `${serviceUrl}/tasks/orders`, serviceAccountEmail: INVOKER, audience: 'https://some-other-service.example', payload, inSeconds: 0,
        });
        console.log = origLog;

        const goodId = good.name.split('/').pop();
        const badId = bad.name.split('/').pop();
        const got = await poll(() => delivered.find((d) => d.taskName === goodId), `${goodId} at the receiver`);
        const problems = [];
        if (JSON.stringify(got.payload) !== JSON.stringify(payload)) problems.push(`payload ${JSON.stringify(got.payload)} != ${JSON.stringify(payload)}`);
        if (got.headers['content-type'] !== 'application/json') problems.push(`content-type ${got.headers['content-type']}`);
        // scheduleTime = now + 1 s (the sample's float seconds; the client truncates to whole seconds).
        const eta = Number(got.headers['x-cloudtasks-tasketa']);
        if (!(eta > createdAt && eta <= createdAt + 1.5)) problems.push(`X-CloudTasks-TaskETA ${got.headers['x-cloudtasks-tasketa']} is not 0–1.5 s after the create call (${createdAt})`);
        if (got.receivedAt < eta - 0.03) problems.push(`delivered at ${got.receivedAt}, before its ETA ${eta}`);
        if (got.claims.aud !== serviceUrl || got.claims.email !== INVOKER || got.claims.iss !== server.url) problems.push(`claims ${JSON.stringify(got.claims)}`);
        const rej = await poll(() => rejected.find((r) => r.taskName === badId), `${badId} to be rejected`);
        if (rej.err.code !== 'ERR_JWT_CLAIM_VALIDATION_FAILED' || rej.err.claim !== 'aud') problems.push(`wrong-audience token rejected for the wrong reason: ${rej.err.code} ${rej.err.message}`);
        if (delivered.some((d) => d.taskName === badId)) problems.push('the wrong-audience task was accepted');
        if (rejected.some((r) => r.taskName === goodId)) problems.push(`the good task was rejected once: ${rejected.find((r) => r.taskName === goodId).err.message}`);
        await deleteTask(clientOptions, bad.name).catch(() => {}); // stop its retries
        if (problems.length) throw new Error(problems.join('; '));
        console.log(`${label}: ok: ${goodId} delivered with the JSON payload and a valid OIDC token (iss ${got.claims.iss}, aud ${got.claims.aud}, email ${got.claims.email}); a token for another audience was rejected (${rej.err.code}, claim ${rej.err.claim})`);
      } catch (e) {
        console.log = origLog;
        failures.push(`${label}: FAIL: ${e?.message ?? e}${e?.code !== undefined ? ` (code ${e.code})` : ''}`);
        console.log(failures.at(-1));
      }
    }
  } catch (e) {
    failures.push(`migration: harness error: ${e?.stack ?? e}`);
    console.error(failures.at(-1));
  } finally {
    if (receiver) {
      receiver.closeAllConnections();
      receiver.close();
    }
    await server.stop();
    if (failures.length) console.log(`--- stratus log (last lines) ---\n${server.logTail(30)}`);
    server.cleanup();
  }
  process.exit(failures.length ? 1 : 0);
}

main();

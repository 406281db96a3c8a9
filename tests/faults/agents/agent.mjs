// The Node package's fault agent (tests/faults/README.md).
//
// Configured by FAULT_* environment variables; one event per line on stdout, timestamps from
// process.hrtime.bigint() (CLOCK_MONOTONIC, the driver's clock). The addon is loaded from
// EDGEMODULE_NODE_DIR (the repository's node/ directory).
//
// FAULT_MODE=send: N numbered sends to output "out", at most FAULT_WINDOW unacknowledged,
// optionally paced at FAULT_RATE per second: "ack SEQ T" / "err SEQ CODE T",
// "state 1|0 REASON T", "ready", "done".
//
// FAULT_MODE=deadlines: the client's deadline is `timeoutMs` (Node has no per-call one, except
// publish's `timeoutMs`); after "go" every call with a deadline, "op NAME CODE MS" each (CODE
// is err.code), "stalled-done", then after the next "go" one more send.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import readline from 'node:readline';

const require = createRequire(import.meta.url);
const { ModuleClient, Message } = require(process.env.EDGEMODULE_NODE_DIR);

const now = () => process.hrtime.bigint();
const say = (line) => process.stdout.write(line + '\n');
const num = (name, dflt) => (process.env[name] ? Number(process.env[name]) : dflt);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const codeOf = (e) => (e && typeof e.code === 'string' ? e.code : 'NOT_EDGE_ERROR');

function options(timeoutMs) {
  const o = {
    ca: readFileSync(process.env.FAULT_CA_FILE, 'utf8'),
    mqttPort: num('FAULT_MQTT_PORT', 8883),
    httpsPort: num('FAULT_HTTPS_PORT', 443),
    amqpPort: num('FAULT_AMQP_PORT', 5671),
    transport: process.env.FAULT_TRANSPORT,
    timeoutMs,
    connectTimeoutMs: num('FAULT_CONNECT_TIMEOUT_MS', 10000),
    retry: { initialDelayMs: 20, maxDelayMs: 500 },
  };
  const ttl = num('FAULT_SAS_TTL', 0);
  if (ttl > 0) {
    o.sasTtl = ttl;
    o.sasRenewalMargin = num('FAULT_SAS_MARGIN', 1);
  }
  return o;
}

function onState(state) {
  say(`state ${state.connected ? 1 : 0} ${state.reason} ${now()}`);
}

async function runSend() {
  const client = await ModuleClient.fromConnectionString(process.env.FAULT_CS, options(num('FAULT_TIMEOUT_MS', 30000)));
  client.onConnectionStateChange(onState);
  const n = num('FAULT_N', 1000);
  const window = num('FAULT_WINDOW', 100);
  const rate = num('FAULT_RATE', 0);
  say('ready');
  let inflight = 0;
  let wake = null;
  const settle = () => {
    inflight--;
    if (wake) {
      const w = wake;
      wake = null;
      w();
    }
  };
  const start = Number(now()) / 1e6;
  for (let seq = 0; seq < n; seq++) {
    if (rate > 0) {
      const wait = start + (seq * 1000) / rate - Number(now()) / 1e6;
      if (wait > 0) await sleep(wait); // pacing
    }
    while (inflight >= window) await new Promise((r) => { wake = r; });
    inflight++;
    client
      .sendOutputEvent('out', new Message(String(seq)))
      .then(
        () => say(`ack ${seq} ${now()}`),
        (e) => say(`err ${seq} ${codeOf(e)} ${now()}`),
      )
      .finally(settle);
  }
  while (inflight > 0) await new Promise((r) => { wake = r; });
  say('done');
  await client.close();
}

async function timed(op, fn) {
  const t0 = now();
  let code = 'OK';
  try {
    await fn();
  } catch (e) {
    code = codeOf(e);
  }
  say(`op ${op} ${code} ${(Number(now() - t0) / 1e6).toFixed(1)}`);
}

async function runDeadlines(lines) {
  const d = num('FAULT_DEADLINE_MS', 1000);
  const client = await ModuleClient.fromConnectionString(process.env.FAULT_CS, options(d));
  client.onConnectionStateChange(onState);
  await client.getTwin();
  say('ready');
  const go = async () => {
    const line = await lines.next();
    if (line.done || line.value.trim() !== 'go') throw new Error(`expected go, got ${JSON.stringify(line.value)}`);
  };
  await go();
  const invoker = timed('invoke', () =>
    client.invokeMethod(client.deviceId, 'receiver', {
      methodName: 'ping',
      payload: null,
      responseTimeoutInSeconds: num('FAULT_INVOKE_RESPONSE_S', 5),
      connectTimeoutInSeconds: 0,
    }),
  );
  await timed('send', () => client.sendOutputEvent('out', new Message('x')));
  await timed('send_batch', () => client.sendOutputEventBatch('out', [new Message('a'), new Message('b')]));
  await timed('get_twin', () => client.getTwin());
  await timed('patch_reported', () => client.updateReported({ stalled: true }));
  if (typeof client.publish === 'function') {
    await timed('publish', () => client.publish('faults/x', 'x', { qos: 1, timeoutMs: d }));
    await timed('subscribe', () => client.subscribe('faults/#', () => {}));
    await timed('unsubscribe', () => client.unsubscribe('faults/#'));
  }
  await invoker;
  say('stalled-done');
  await go();
  await timed('after_send', () => client.sendOutputEvent('out', new Message('after')));
  say('done');
  await client.close();
}

async function main() {
  // The generated index.d.ts describes the addon beside it (drift-checked in CI).
  const types = readFileSync(`${process.env.EDGEMODULE_NODE_DIR}/index.d.ts`, 'utf8');
  if (process.env.FAULT_TRANSPORT === 'amqp' && !types.includes('amqpPort')) {
    say("skip this edgemodule addon has no amqpPort option (the hub's AMQPS port is not 5671 here)");
    return;
  }
  if (process.env.FAULT_MODE === 'send') {
    await runSend();
  } else if (process.env.FAULT_MODE === 'deadlines') {
    const rl = readline.createInterface({ input: process.stdin });
    await runDeadlines(rl[Symbol.asyncIterator]());
    rl.close();
  } else {
    throw new Error(`unknown FAULT_MODE ${process.env.FAULT_MODE}`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

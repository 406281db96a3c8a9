// One benchmark workload of one Node module client against a running edgemodule-hub.
//
// Usage: node node_bench.js --impl edgemodule|official --workload a|b|c|d|e
//                           --cs CONNECTION_STRING --ca CA_FILE [--port MQTT_PORT] [--n N]
//
// Workloads as in python_bench.py: (a) N sends awaited each, (b) N sends in Promise.all batches
// of 100, (c) receive N pre-loaded messages on input "in" (first -> last at the handler), (d) N
// sequential round trips output "loop" -> route -> input "loop" (p50/p99), (e) RSS of the bare
// runtime, after loading the SDK, and of a connected client with an input handler (2 s settle).
// `edgemodule` is loaded from EDGEMODULE_NODE_DIR (the repository's node/ directory); the
// official SDK (azure-iot-device 1.18 + azure-iot-device-mqtt 1.16) through NODE_PATH.
// Prints one JSON line.
'use strict';
const rssBare = process.memoryUsage.rss();
const fs = require('fs');

const BODY = Buffer.alloc(256, 'x');
const WINDOW = 100;

function parse() {
  const a = { port: 8883, n: 10000, timeout: 300 };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) a[argv[i].replace(/^--/, '')] = argv[i + 1];
  a.port = Number(a.port);
  a.n = Number(a.n);
  a.timeout = Number(a.timeout);
  if (!['edgemodule', 'official'].includes(a.impl) || !'abcde'.includes(a.workload) || !a.cs || !a.ca) {
    throw new Error('usage: node_bench.js --impl edgemodule|official --workload a|b|c|d|e --cs CS --ca CA_FILE [--port P] [--n N]');
  }
  return a;
}

const now = () => Number(process.hrtime.bigint()) / 1e9;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const percentile = (sorted, p) => sorted[Math.round((sorted.length - 1) * p)];
function withTimeout(promise, s, what) {
  let t;
  return Promise.race([promise, new Promise((_, rej) => { t = setTimeout(() => rej(new Error(`timed out: ${what}`)), s * 1000); })])
    .finally(() => clearTimeout(t));
}

// A uniform facade over both SDKs: send(output), onInput(input, fn(msg)), complete(msg), close().
async function edgemoduleClient(args, ca) {
  const { ModuleClient, Message } = require(process.env.EDGEMODULE_NODE_DIR || 'edgemodule');
  const rssLoaded = process.memoryUsage.rss();
  const opts = { ca };
  if (args.port !== 8883) opts.mqttPort = args.port;
  const client = await ModuleClient.fromConnectionString(args.cs, opts);
  return {
    rssLoaded,
    send: (output) => client.sendOutputEvent(output, new Message(BODY)),
    onInput: (input, fn) => client.onInputMessage(input, fn),
    complete: (msg) => msg.complete(),
    close: () => client.close(),
  };
}

async function officialClient(args, ca) {
  const { ModuleClient, Message } = require('azure-iot-device');
  const { Mqtt } = require('azure-iot-device-mqtt');
  const rssLoaded = process.memoryUsage.rss();
  if (args.port !== 8883) throw new Error('the official SDK can only connect to port 8883');
  const client = ModuleClient.fromConnectionString(args.cs, Mqtt);
  await client.setOptions({ ca });
  await client.open();
  const handlers = new Map();
  client.on('inputMessage', (input, msg) => { const h = handlers.get(input); if (h) h(msg); });
  return {
    rssLoaded,
    send: (output) => client.sendOutputEvent(output, new Message(BODY)),
    onInput: (input, fn) => handlers.set(input, fn),
    complete: (msg) => client.complete(msg, () => {}),
    close: () => client.close(),
  };
}

async function run(args, c) {
  switch (args.workload) {
    case 'a': {
      const t = now();
      for (let i = 0; i < args.n; i++) await c.send('sink');
      return { rate: args.n / (now() - t) };
    }
    case 'b': {
      const t = now();
      for (let left = args.n; left > 0; left -= WINDOW) {
        const k = Math.min(WINDOW, left);
        const batch = [];
        for (let i = 0; i < k; i++) batch.push(c.send('sink'));
        await Promise.all(batch);
      }
      return { rate: args.n / (now() - t), how: 'Promise.all, batches of 100' };
    }
    case 'c': {
      let count = 0;
      let first = 0;
      const last = await withTimeout(new Promise((resolve) => {
        c.onInput('in', (msg) => {
          const t = now();
          if (count === 0) first = t;
          count++;
          c.complete(msg);
          if (count === args.n) resolve(t);
        });
      }), args.timeout, `received ${count} of ${args.n}`);
      return { rate: (args.n - 1) / (last - first) };
    }
    case 'd': {
      let wake = null;
      c.onInput('loop', (msg) => { c.complete(msg); if (wake) { const w = wake; wake = null; w(); } });
      const samples = [];
      for (let i = 0; i < args.n; i++) {
        const got = new Promise((r) => { wake = r; });
        const t = now();
        await c.send('loop');
        await withTimeout(got, args.timeout, 'round trip message');
        samples.push(now() - t);
      }
      samples.sort((x, y) => x - y);
      return { p50_us: percentile(samples, 0.5) * 1e6, p99_us: percentile(samples, 0.99) * 1e6 };
    }
    case 'e': {
      c.onInput('in', (msg) => c.complete(msg));
      await sleep(2000);
      return { rss_bare_kib: Math.round(rssBare / 1024), rss_loaded_kib: Math.round(c.rssLoaded / 1024), rss_idle_kib: Math.round(process.memoryUsage.rss() / 1024) };
    }
  }
  throw new Error(`unknown workload ${args.workload}`);
}

async function main() {
  const args = parse();
  const ca = fs.readFileSync(args.ca, 'utf8');
  const c = args.impl === 'edgemodule' ? await edgemoduleClient(args, ca) : await officialClient(args, ca);
  let out;
  try {
    out = await run(args, c);
  } finally {
    await withTimeout(Promise.resolve(c.close()), 10, 'close').catch(() => {});
  }
  const cpu = process.cpuUsage();
  console.log(JSON.stringify({ impl: args.impl, mode: 'async', workload: args.workload, n: args.n, ...out, cpu_s: (cpu.user + cpu.system) / 1e6 }));
  process.exit(0);
}

main().catch((e) => { console.error(e && e.stack || String(e)); process.exit(1); });

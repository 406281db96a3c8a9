// A module written against the OFFICIAL azure-iot-device 1.18 + azure-iot-device-mqtt 1.16 +
// azure-iot-device-amqp 1.14 Node SDK, unchanged, to prove the hub speaks edgeHub's wire protocol.
// Usage: node node_module.js (env | cs CONNECTION_STRING CA_FILE) PEER
// where a mode ending in `-ws` (`env-ws`, `cs-ws`) uses the `MqttWs` transport (MQTT over
// WebSocket on port 443), one ending in `-amqp` the `Amqp` transport (AMQP 1.0 on 5671), one ending
// in `-amqpws` the `AmqpWs` transport (AMQP 1.0 over WebSocket on port 443), instead of `Mqtt` on
// 8883.
'use strict';
const fs = require('fs');
const { ModuleClient, Message } = require('azure-iot-device');
const { Mqtt, MqttWs } = require('azure-iot-device-mqtt');
const { Amqp, AmqpWs } = require('azure-iot-device-amqp');

const mode = process.argv[2];
const [source] = mode.split('-');
const Transport = { ws: MqttWs, amqp: Amqp, amqpws: AmqpWs }[mode.split('-')[1]] || Mqtt;
const peer = process.argv[process.argv.length - 1];
const say = (o) => console.log(JSON.stringify(o));
const waiting = new Map();
const seen = (name) => { const w = waiting.get(name); if (w) w(); else waiting.set(name, null); };
const wait = (name, ms) => new Promise((resolve, reject) => {
  if (waiting.has(name)) return resolve();
  const t = setTimeout(() => reject(new Error(`timed out waiting for ${name}`)), ms);
  waiting.set(name, () => { clearTimeout(t); resolve(); });
});

async function create() {
  if (source === 'env') return ModuleClient.fromEnvironment(Transport);
  const client = ModuleClient.fromConnectionString(process.argv[3], Transport);
  await client.setOptions({ ca: fs.readFileSync(process.argv[4], 'utf8') });
  return client;
}

async function main() {
  const client = await create();
  client.on('inputMessage', (input, msg) => {
    const props = {};
    for (const p of msg.properties.propertyList) props[p.key] = p.value;
    say({ event: 'input', input, body: msg.data.toString(), props });
    client.complete(msg, () => seen('input'));
  });
  for (const name of ['hello', 'ping']) {
    client.onMethod(name, (req, res) => {
      res.send(200, { echo: req.payload, by: 'node' }, () => { say({ event: 'method', name: req.methodName }); seen(name); });
    });
  }
  await client.open();
  const twin = await client.getTwin();
  say({ event: 'twin', desired: twin.properties.desired });
  // The SDK first replays the desired document it already has; only later versions are patches.
  const baseline = twin.properties.desired.$version;
  twin.on('properties.desired', (patch) => {
    if (patch.$version > baseline) { say({ event: 'desired', patch }); seen('desired'); }
  });
  await new Promise((resolve, reject) => twin.properties.reported.update({ sdk: 'node', mode }, (e) => (e ? reject(e) : resolve())));
  const msg = new Message('hello from node');
  msg.properties.add('lang', 'node');
  msg.properties.add('k/2', 'a&b=c');
  await client.sendOutputEvent('out', msg);
  say({ event: 'ready' });
  await wait('input', 60000);
  await wait('desired', 60000);
  await wait('ping', 60000);
  if (source === 'env') {
    const result = await client.invokeMethod(process.env.IOTEDGE_DEVICEID, peer,
      { methodName: 'hello', payload: { from: 'node' }, responseTimeoutInSeconds: 10 });
    say({ event: 'invoked', status: result.status, payload: result.payload });
    await wait('hello', 60000); // stay up until the peer's call to us has been answered
  }
  await client.close();
  say({ event: 'done' });
  process.exit(0);
}

main().catch((e) => { say({ event: 'error', message: String(e && e.stack || e) }); process.exit(1); });

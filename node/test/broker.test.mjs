// User topics (the hub's MQTT broker): publish, subscribe and unsubscribe against a real
// edgemodule-hub whose deployment carries an authorization policy (docs/broker.md).
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'

import { DEFAULT_DEPLOYMENT, Inbox, rejectsWith, startHub } from './hub.mjs'

const require = createRequire(import.meta.url)
const index = join(dirname(fileURLToPath(import.meta.url)), '..', 'index.js')
const { ModuleClient } = require(index)
const T = { timeout: 90_000 }

/** Everyone connects; `sender` publishes on sensors/# and in/receiver/#; everyone subscribes to
 * sensors/# and in/<own module id>/#; nobody publishes or subscribes on sensors/secret/#. */
const BROKER_DEPLOYMENT = structuredClone(DEFAULT_DEPLOYMENT)
Object.assign(BROKER_DEPLOYMENT.modulesContent.$edgeHub['properties.desired'], {
  schemaVersion: '1.2',
  mqttBroker: {
    authorizations: [
      { identities: ['{{iot:identity}}'], allow: [{ operations: ['mqtt:connect'] }] },
      {
        identities: ['{{iot:this_device_id}}/sender'],
        allow: [{ operations: ['mqtt:publish'], resources: ['sensors/#', 'in/receiver/#'] }],
      },
      {
        identities: ['{{iot:identity}}'],
        allow: [{ operations: ['mqtt:subscribe'], resources: ['sensors/#', 'in/{{iot:module_id}}/#'] }],
        deny: [{ operations: ['mqtt:publish', 'mqtt:subscribe'], resources: ['sensors/secret/#'] }],
      },
    ],
  },
})

/** What a handler saw, as plain values. */
const seen = (m) => ({ topic: m.topic, payload: m.payload.toString('utf8'), qos: m.qos, retain: m.retain })

describe('user topics against edgemodule-hub with a broker policy', () => {
  let hub
  let sender
  let receiver

  const connect = async (module) =>
    ModuleClient.fromConnectionString(await hub.connectionString(module), hub.options())

  before(async () => {
    hub = await startHub(BROKER_DEPLOYMENT)
    sender = await connect('sender')
    receiver = await connect('receiver')
  })

  after(async () => {
    await sender?.close()
    await receiver?.close()
    await hub?.stop()
  })

  test('retained and live messages reach subscribers; unsubscribe and replacement', T, async () => {
    await sender.publish('sensors/door/state', 'closed', { retain: true })
    await sender.publish('sensors/door/state', Buffer.from('open'), { qos: 1, retain: true })
    const doors = new Inbox()
    await receiver.subscribe('sensors/door/#', (m) => doors.push(seen(m)))
    assert.deepEqual(await doors.next(), { topic: 'sensors/door/state', payload: 'open', qos: 1, retain: true })

    const temps = new Inbox()
    await receiver.subscribe('sensors/+/temp', (m) => temps.push(m))
    await sender.publish('sensors/kitchen/temp', '21')
    await sender.publish('sensors/hall/humidity', '40')
    await sender.publish('sensors/hall/temp', Buffer.from([0x31, 0x39]), { qos: 0 })
    await sender.publish('sensors/empty/temp', '')
    const first = await temps.next()
    assert.ok(Buffer.isBuffer(first.payload))
    assert.deepEqual(seen(first), { topic: 'sensors/kitchen/temp', payload: '21', qos: 1, retain: false })
    assert.deepEqual(seen(await temps.next()), { topic: 'sensors/hall/temp', payload: '19', qos: 0, retain: false })
    assert.deepEqual(seen(await temps.next()), { topic: 'sensors/empty/temp', payload: '', qos: 1, retain: false })

    // Unsubscribed: the door message, published after the temperature, arrives; the temperature does not.
    await receiver.unsubscribe('sensors/+/temp')
    await sender.publish('sensors/kitchen/temp', '22')
    await sender.publish('sensors/door/state', 'ajar')
    assert.deepEqual(await doors.next(), { topic: 'sensors/door/state', payload: 'ajar', qos: 1, retain: false })
    assert.equal(temps.items.length, 0)
    await receiver.unsubscribe('never/subscribed')

    // The same filter again: the new handler replaces the old one and gets the retained message.
    const doors2 = new Inbox()
    await receiver.subscribe('sensors/door/#', (m) => doors2.push(seen(m)))
    assert.deepEqual(await doors2.next(), { topic: 'sensors/door/state', payload: 'open', qos: 1, retain: true })
    await sender.publish('sensors/door/state', 'shut', { qos: 0, timeoutMs: 5_000 })
    assert.deepEqual(await doors2.next(), { topic: 'sensors/door/state', payload: 'shut', qos: 0, retain: false })
    assert.equal(doors.items.length, 0)
    await receiver.unsubscribe('sensors/door/#')

    // Own topic: a client receives what it publishes itself.
    const own = new Inbox()
    await receiver.subscribe('in/receiver/#', (m) => own.push(seen(m)))
    await sender.publish('in/receiver/cmd', 'go')
    assert.deepEqual(await own.next(), { topic: 'in/receiver/cmd', payload: 'go', qos: 1, retain: false })
    await receiver.unsubscribe('in/receiver/#')
  })

  test('refusals by the policy reject with REJECTED and CONNECTION_LOST', T, async () => {
    const inbox = new Inbox()
    await rejectsWith(receiver.subscribe('sensors/secret/#', inbox.push), 'REJECTED')
    await rejectsWith(receiver.subscribe('in/sender/#', inbox.push), 'REJECTED')
    // `receiver` may not publish: the hub drops the connection, the client resends once, then gives up.
    await rejectsWith(receiver.publish('sensors/x', 'y', { timeoutMs: 30_000 }), 'CONNECTION_LOST')
    await rejectsWith(sender.publish('sensors/secret/code', '1234', { timeoutMs: 30_000 }), 'CONNECTION_LOST')
    // Both still work: a new subscription is granted and receives.
    await receiver.subscribe('sensors/after/#', inbox.push)
    await sender.publish('sensors/after/x', 'still here')
    assert.deepEqual(seen(await inbox.next()), { topic: 'sensors/after/x', payload: 'still here', qos: 1, retain: false })
    await receiver.unsubscribe('sensors/after/#')
  })

  test('invalid topics, filters and QoS reject with INVALID_ARGUMENT', T, async () => {
    const handler = () => assert.fail('no message expected')
    for (const topic of ['a/+', 'a/#', '', 'devices/d/modules/m/messages/events', '$iothub/twin/GET/?$rid=1']) {
      await rejectsWith(sender.publish(topic, 'x'), 'INVALID_ARGUMENT')
    }
    const e = await rejectsWith(sender.publish('sensors/q', 'x', { qos: 2 }), 'INVALID_ARGUMENT')
    assert.match(e.message, /qos must be 0 or 1/)
    await rejectsWith(sender.publish('sensors/q', 'x', { qos: 0.5 }), 'INVALID_ARGUMENT')
    await rejectsWith(sender.publish('sensors/q', 'x', { timeoutMs: -1 }), 'INVALID_ARGUMENT')
    for (const filter of ['a/#/b', 'a+', '#/a', '', 'devices/#', '$iothub/#']) {
      await rejectsWith(receiver.subscribe(filter, handler), 'INVALID_ARGUMENT')
      await rejectsWith(receiver.unsubscribe(filter), 'INVALID_ARGUMENT')
    }
    await rejectsWith(sender.publish('sensors/big', Buffer.alloc(256 * 1024 + 1)), 'MESSAGE_TOO_LARGE')
    // What JavaScript's types force: napi's own argument errors.
    assert.throws(() => sender.publish('sensors/x', 42))
    assert.throws(() => receiver.subscribe('sensors/#', 'not a function'))
  })
})

// The child subscribes, tries a refused subscription, then per MODE closes, unsubscribes, or
// leaves the granted subscription open, and prints `ready`.
const CHILD = `
const { ModuleClient } = require(process.env.EDGEMODULE_INDEX)
;(async () => {
  const c = await ModuleClient.fromConnectionString(process.env.CS, JSON.parse(process.env.OPTIONS))
  await c.subscribe('sensors/#', () => {})
  await c.subscribe('sensors/secret/#', () => {}).then(() => process.exit(4), (e) => e.code === 'REJECTED' || process.exit(5))
  if (process.env.MODE === 'close') await c.close()
  if (process.env.MODE === 'unsubscribe') await c.unsubscribe('sensors/#')
  console.log('ready')
})().catch((e) => { console.error(e.code, e.message); process.exit(3) })
`

function runChild(env, limitMs) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['-e', CHILD], { env: { ...process.env, ...env }, stdio: 'pipe' })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      resolve({ timedOut: true, stdout, stderr })
    }, limitMs)
    child.on('exit', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

describe('subscription handlers and process lifetime', () => {
  let hub
  let env
  before(async () => {
    hub = await startHub(BROKER_DEPLOYMENT)
    env = { EDGEMODULE_INDEX: index, CS: await hub.connectionString('receiver'), OPTIONS: JSON.stringify(hub.options()) }
  })
  after(async () => hub?.stop())

  for (const mode of ['close', 'unsubscribe']) {
    test(`the process exits after ${mode}() (refused subscriptions hold nothing)`, { timeout: 30_000 }, async () => {
      const r = await runChild({ ...env, MODE: mode }, 8_000)
      assert.ok(!r.timedOut, `the process did not exit: ${r.stdout} ${r.stderr}`)
      assert.equal(r.code, 0, r.stderr)
      assert.match(r.stdout, /ready/)
    })
  }

  test('a granted subscription keeps an open client alive', { timeout: 30_000 }, async () => {
    const r = await runChild({ ...env, MODE: 'open' }, 3_000)
    assert.ok(r.timedOut, `the process exited with a subscription: ${r.code} ${r.stderr}`)
    assert.match(r.stdout, /ready/)
  })
})

// Every ModuleClient primitive against a real edgemodule-hub on 127.0.0.1.
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { after, before, describe, test } from 'node:test'

import { Inbox, rejectsWith, sleep, startHub, withEnv } from './hub.mjs'

const require = createRequire(import.meta.url)
const { ModuleClient, Message } = require('../index.js')
const T = { timeout: 60_000 }

describe('ModuleClient against edgemodule-hub', () => {
  let hub
  let sender
  let receiver

  const connect = async (module, extra) =>
    ModuleClient.fromConnectionString(await hub.connectionString(module), hub.options(extra))

  before(async () => {
    hub = await startHub()
    sender = await connect('sender')
    receiver = await connect('receiver')
  })

  after(async () => {
    await sender?.close()
    await receiver?.close()
    await hub?.stop()
  })

  test('connects from a connection string', T, () => {
    assert.equal(sender.moduleId, 'sender')
    assert.equal(sender.deviceId, hub.deviceId)
    assert.deepEqual(sender.connectionState, { connected: true, reason: 'OK' })
  })

  test('sendOutputEvent routes a message with all its properties to an input handler', T, async () => {
    const inbox = new Inbox()
    receiver.onInputMessage('in1', inbox.push)
    const m = new Message('{"t":21}')
    m.messageId = 'mid-1'
    m.correlationId = 'cid-1'
    m.contentType = 'application/json'
    m.contentEncoding = 'utf-8'
    m.setProperty('unit', 'C')
    await sender.sendOutputEvent('out1', m)
    const got = await inbox.next()
    assert.ok(got instanceof Message)
    assert.equal(got.body.toString(), '{"t":21}')
    assert.equal(got.messageId, 'mid-1')
    assert.equal(got.correlationId, 'cid-1')
    assert.equal(got.contentType, 'application/json')
    assert.equal(got.contentEncoding, 'utf-8')
    assert.equal(got.properties.unit, 'C')
    assert.equal(got.inputName, 'in1')
    assert.equal(got.connectionModuleId, 'sender')
    got.complete()
  })

  test('a received message can be completed later, once', T, async () => {
    const inbox = new Inbox()
    receiver.onInputMessage('in1', inbox.push)
    await sender.sendOutputEvent('out1', new Message('deferred'))
    const got = await inbox.next()
    await sleep(300)
    got.complete()
    assert.throws(() => got.complete(), (e) => e.code === 'INVALID_STATE')
    assert.throws(() => got.abandon(), (e) => e.code === 'INVALID_STATE')
  })

  test('an abandoned message is not acknowledged and cannot be completed afterwards', T, async () => {
    const inbox = new Inbox()
    receiver.onInputMessage('in1', inbox.push)
    await sender.sendOutputEvent('out1', new Message('abandon me'))
    const got = await inbox.next()
    got.abandon()
    assert.throws(() => got.complete(), (e) => e.code === 'INVALID_STATE')
  })

  test('sendOutputEventBatch delivers every message', T, async () => {
    const inbox = new Inbox()
    receiver.onInputMessage('many', inbox.push)
    const msgs = [1, 2, 3, 4, 5].map((i) => new Message(`m${i}`))
    await sender.sendOutputEventBatch('many', msgs)
    const bodies = []
    for (let i = 0; i < msgs.length; i++) {
      const m = await inbox.next()
      bodies.push(m.body.toString())
      m.complete()
    }
    assert.deepEqual(bodies.sort(), ['m1', 'm2', 'm3', 'm4', 'm5'])
  })

  test('the default input handler gets inputs without their own handler', T, async () => {
    const inbox = new Inbox()
    receiver.onInputMessage(null, inbox.push)
    await hub.send('receiver', 'elsewhere', 'via cli', { k: 'v' })
    const got = await inbox.next()
    assert.equal(got.inputName, 'elsewhere')
    assert.equal(got.body.toString(), 'via cli')
    assert.equal(got.properties.k, 'v')
    got.complete()
  })

  test('registering an input again replaces its handler', T, async () => {
    const first = new Inbox()
    const second = new Inbox()
    receiver.onInputMessage('in1', first.push)
    receiver.onInputMessage('in1', second.push)
    await sender.sendOutputEvent('out1', new Message('to the second'))
    const got = await second.next()
    got.complete()
    assert.equal(got.body.toString(), 'to the second')
    assert.equal(first.items.length, 0)
  })

  test('getTwin and updateReported', T, async () => {
    const twin = await receiver.getTwin()
    assert.equal(twin.desired.threshold, 25)
    assert.equal(typeof twin.desired.$version, 'number')
    await receiver.updateReported({ status: 'running', count: 3 })
    const after = await receiver.getTwin()
    assert.equal(after.reported.status, 'running')
    assert.equal(after.reported.count, 3)
    const seen = await hub.twin('receiver')
    assert.equal(JSON.stringify(seen).includes('running'), true)
  })

  test('onDesiredPropertiesUpdate receives a desired patch made on the hub', T, async () => {
    const inbox = new Inbox()
    receiver.onDesiredPropertiesUpdate(inbox.push)
    await hub.patchDesired('receiver', { threshold: 40 })
    const patch = await inbox.next(10_000, 'a desired patch')
    assert.equal(patch.threshold, 40)
    assert.equal(typeof patch.$version, 'number')
  })

  test('onMethod handlers may respond later; the hub gets the answer', T, async () => {
    receiver.onMethod('echo', (req) => {
      assert.equal(req.methodName, 'echo')
      assert.equal(typeof req.requestId, 'string')
      setTimeout(() => req.respond(201, { echo: req.payload }), 500)
    })
    const answer = await hub.invoke('receiver', 'echo', { x: 1 })
    assert.equal(answer.ok, true)
    assert.equal(answer.status, 201)
    assert.deepEqual(answer.payload, { echo: { x: 1 } })
  })

  test('a second respond rejects with INVALID_STATE', T, async () => {
    const outcome = new Inbox()
    receiver.onMethod('twice', async (req) => {
      await req.respond(200, null)
      try {
        await req.respond(200, null)
        outcome.push('resolved')
      } catch (e) {
        outcome.push(e.code)
      }
    })
    const answer = await hub.invoke('receiver', 'twice')
    assert.equal(answer.status, 200)
    assert.equal(await outcome.next(), 'INVALID_STATE')
  })

  test('invokeMethod calls another module through the hub', T, async () => {
    receiver.onMethod(null, (req) => req.respond(200, { method: req.methodName, got: req.payload }))
    const r = await sender.invokeMethod(hub.deviceId, 'receiver', {
      methodName: 'anything',
      payload: [1, 'two'],
      responseTimeoutInSeconds: 10,
    })
    assert.deepEqual(r, { status: 200, payload: { method: 'anything', got: [1, 'two'] } })
  })

  test('invokeMethod on a module that is not connected rejects with NOT_FOUND', T, async () => {
    await rejectsWith(
      sender.invokeMethod(hub.deviceId, 'other', { methodName: 'ping', responseTimeoutInSeconds: 5 }),
      'NOT_FOUND',
    )
  })

  test('invalid inputs reject with INVALID_ARGUMENT', T, async () => {
    await rejectsWith(sender.sendOutputEvent('bad name', new Message('x')), 'INVALID_ARGUMENT')
    await rejectsWith(sender.sendOutputEventBatch('out/1', [new Message('x')]), 'INVALID_ARGUMENT')
    const bad = new Message('x')
    bad.setProperty('$.mid', 'reserved')
    await rejectsWith(sender.sendOutputEvent('out1', bad), 'INVALID_ARGUMENT')
    await rejectsWith(sender.updateReported(42), 'INVALID_ARGUMENT')
    await rejectsWith(
      sender.invokeMethod(hub.deviceId, 'receiver', { methodName: 'x', responseTimeoutInSeconds: 1 }),
      'INVALID_ARGUMENT',
    )
    await rejectsWith(sender.invokeMethod('bad device!', 'receiver', { methodName: 'x' }), 'INVALID_ARGUMENT')
    assert.throws(
      () => sender.onInputMessage('a/b', () => {}),
      (e) => e.code === 'INVALID_ARGUMENT',
    )
    assert.throws(
      () => sender.onMethod('', () => {}),
      (e) => e.code === 'INVALID_ARGUMENT',
    )
  })

  test('a message over 256 KB rejects with MESSAGE_TOO_LARGE', T, async () => {
    await rejectsWith(sender.sendOutputEvent('out1', new Message(Buffer.alloc(300 * 1024))), 'MESSAGE_TOO_LARGE')
  })

  test('a wrong key rejects with UNAUTHORIZED', T, async () => {
    const cs = (await hub.connectionString('sender')).replace(/SharedAccessKey=[^;]+/, 'SharedAccessKey=d3Jvbmc=')
    await rejectsWith(ModuleClient.fromConnectionString(cs, hub.options({ retry: { enabled: false } })), 'UNAUTHORIZED')
  })

  test('an untrusted hub certificate rejects with TLS', T, async () => {
    const cs = await hub.connectionString('sender')
    const { ca, ...noCa } = hub.options()
    assert.ok(ca)
    await rejectsWith(ModuleClient.fromConnectionString(cs, noCa), 'TLS')
  })

  test('a port nobody listens on rejects with CONNECTION_REFUSED', T, async () => {
    const cs = await hub.connectionString('sender')
    // A port that was just bound and released: nothing listens there.
    const net = await import('node:net')
    const port = await new Promise((res) => {
      const srv = net.createServer().listen(0, '127.0.0.1', () => {
        const p = srv.address().port
        srv.close(() => res(p))
      })
    })
    await rejectsWith(ModuleClient.fromConnectionString(cs, hub.options({ mqttPort: port })), 'CONNECTION_REFUSED')
  })

  test('fromEnvironment connects with the environment `edgemodule-hub env` prints', T, async () => {
    const vars = await hub.env('other')
    assert.ok(vars.IOTEDGE_WORKLOADURI)
    assert.equal(vars.EDGEMODULE_MQTT_PORT, String(hub.mqttPort))
    const client = await withEnv(vars, () => ModuleClient.fromEnvironment({ timeoutMs: 10_000, connectTimeoutMs: 5_000 }))
    try {
      assert.equal(client.moduleId, 'other')
      assert.deepEqual(client.connectionState, { connected: true, reason: 'OK' })
      receiver.onMethod('ping', (req) => req.respond(200, 'pong'))
      const r = await client.invokeMethod(hub.deviceId, 'receiver', { methodName: 'ping' })
      assert.deepEqual(r, { status: 200, payload: 'pong' })
      await client.getTwin()
    } finally {
      await client.close()
    }
  })

  test('close reports CLOSED to the state handler and later calls reject with CLOSED', T, async () => {
    const c = await connect('other')
    const states = new Inbox()
    c.onConnectionStateChange(states.push)
    c.onInputMessage('x', () => {})
    c.onMethod(null, () => {})
    c.onDesiredPropertiesUpdate(() => {})
    await c.close()
    assert.deepEqual(await states.next(5_000, 'the CLOSED state'), { connected: false, reason: 'CLOSED' })
    assert.deepEqual(c.connectionState, { connected: false, reason: 'CLOSED' })
    await rejectsWith(c.sendOutputEvent('out1', new Message('late')), 'CLOSED')
    await rejectsWith(c.getTwin(), 'CLOSED')
    assert.throws(
      () => c.onInputMessage('y', () => {}),
      (e) => e.code === 'CLOSED',
    )
    await c.close()
  })
})

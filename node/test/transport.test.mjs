// The `transport`, `httpsPort` and `proxy` options: names are the core's, and the client works
// over MQTT over WebSocket against a real edgemodule-hub. Every WebSocket client is given an MQTT
// port nothing listens on, so none can silently use MQTT over TLS.
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { after, before, describe, test } from 'node:test'

import { Inbox, closedPort, rejectsWith, startHub, withEnv } from './hub.mjs'

const require = createRequire(import.meta.url)
const { ModuleClient, Message } = require('../index.js')
const T = { timeout: 60_000 }
const CS = 'HostName=h.example;DeviceId=d;ModuleId=m;SharedAccessKey=a2V5'

test('an unknown transport rejects with INVALID_ARGUMENT naming the accepted ones', T, async () => {
  const e = await rejectsWith(ModuleClient.fromConnectionString(CS, { transport: 'carrier_pigeon' }), 'INVALID_ARGUMENT')
  assert.match(e.message, /unknown transport 'carrier_pigeon'/)
  assert.match(e.message, /mqtt_ws/)
  assert.equal(e.retryable, false)
  await rejectsWith(ModuleClient.fromEnvironment({ transport: '' }), 'INVALID_ARGUMENT')
})

test('the proxy is checked by the core: WebSocket only, an http:// URL', T, async () => {
  const e = await rejectsWith(
    ModuleClient.fromConnectionString(CS, { transport: 'MQTT', proxy: 'http://127.0.0.1:3128' }),
    'CONFIGURATION'
  )
  assert.match(e.message, /WebSocket/)
  await rejectsWith(
    ModuleClient.fromConnectionString(CS, { transport: 'mqtt_ws', proxy: '127.0.0.1:3128' }),
    'CONFIGURATION'
  )
})

describe('ModuleClient over MQTT over WebSocket', () => {
  let hub
  let sender
  let receiver

  const connect = async (module) =>
    ModuleClient.fromConnectionString(
      await hub.connectionString(module),
      hub.options({ transport: 'mqtt_ws', mqttPort: await closedPort() })
    )

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

  test('send -> route -> input, properties intact, and a 200 KB body', T, async () => {
    const inbox = new Inbox()
    receiver.onInputMessage('in1', inbox.push)
    const m = new Message('{"t":21}')
    m.messageId = 'mid-ws'
    m.setProperty('k/2', 'a&b=c')
    await sender.sendOutputEvent('out1', m)
    let got = await inbox.next()
    assert.equal(got.body.toString(), '{"t":21}')
    assert.equal(got.messageId, 'mid-ws')
    assert.deepEqual(got.properties, { 'k/2': 'a&b=c' })
    assert.equal(got.inputName, 'in1')
    assert.equal(got.connectionModuleId, 'sender')
    got.complete()
    const big = Buffer.alloc(200 * 1024, 0).map((_, i) => i % 251)
    await sender.sendOutputEvent('out1', new Message(big))
    got = await inbox.next()
    assert.ok(Buffer.compare(got.body, big) === 0, 'the 200 KB body arrives intact')
    got.complete()
  })

  test('twin get and reported patch', T, async () => {
    const twin = await receiver.getTwin()
    assert.equal(twin.desired.threshold, 25)
    await receiver.updateReported({ transport: 'mqtt_ws' })
    assert.equal((await receiver.getTwin()).reported.transport, 'mqtt_ws')
  })

  test('fromEnvironment reads the WebSocket port from EDGEMODULE_HTTPS_PORT', T, async () => {
    const vars = await hub.env('other')
    assert.equal(vars.EDGEMODULE_HTTPS_PORT, String(hub.httpsPort))
    // No MQTT listener on the MQTT port: the client must use the transport it was given.
    const blocked = { ...vars, EDGEMODULE_MQTT_PORT: String(await closedPort()) }
    const client = await withEnv(blocked, () => ModuleClient.fromEnvironment({ transport: 'mqtt_ws', timeoutMs: 10_000, connectTimeoutMs: 5_000 }))
    try {
      assert.equal(client.moduleId, 'other')
      assert.equal(typeof (await client.getTwin()).desired.$version, 'number')
    } finally {
      await client.close()
    }
  })
})

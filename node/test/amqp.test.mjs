// The AMQP transport (`transport: 'amqp'`, `amqpPort`) and settling messages three ways
// (`complete()`, `abandon()`, `reject()`) against a real edgemodule-hub. Every AMQP client is given
// an MQTT port nothing listens on, so none can silently use MQTT over TLS.
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { after, before, describe, test } from 'node:test'

import { Inbox, closedPort, rejectsWith, startHub, withEnv } from './hub.mjs'

const require = createRequire(import.meta.url)
const { ModuleClient, Message } = require('../index.js')
const T = { timeout: 60_000 }
const CS = 'HostName=h.example;DeviceId=d;ModuleId=m;SharedAccessKey=a2V5'

function throwsWith(fn, code) {
  assert.throws(fn, (e) => e.code === code)
}

test('amqpPort is converted by the binding and checked by the core', T, async () => {
  const e = await rejectsWith(ModuleClient.fromConnectionString(CS, { transport: 'amqp', amqpPort: 0 }), 'INVALID_ARGUMENT')
  assert.match(e.message, /ports must be non-zero/)
  await rejectsWith(ModuleClient.fromConnectionString(CS, { amqpPort: 70_000 }), 'INVALID_ARGUMENT')
})

test('reject() on a message that was not received throws INVALID_STATE', () => {
  throwsWith(() => new Message('x').reject(), 'INVALID_STATE')
})

/** After a reconnect the first message on in1 is `marker`, sent now: nothing settled away came back. */
async function firstAfterReconnectIs(hub, sender, options, marker) {
  const again = await ModuleClient.fromConnectionString(await hub.connectionString('receiver'), options)
  try {
    const inbox = new Inbox()
    again.onInputMessage('in1', inbox.push)
    await sender.sendOutputEvent('out1', new Message(marker))
    const m = await inbox.next()
    assert.equal(m.body.toString(), marker)
    m.complete()
  } finally {
    await again.close()
  }
}

describe('ModuleClient over AMQP', () => {
  let hub
  let options
  let sender

  before(async () => {
    hub = await startHub()
    options = hub.options({ transport: 'amqp', mqttPort: await closedPort(), connectTimeoutMs: 15_000 })
    sender = await ModuleClient.fromConnectionString(await hub.connectionString('sender'), options)
  })

  after(async () => {
    await sender?.close()
    await hub?.stop()
  })

  test('abandon() comes back without a reconnect, reject() is gone', T, async () => {
    const receiver = await ModuleClient.fromConnectionString(await hub.connectionString('receiver'), options)
    const states = []
    try {
      receiver.onConnectionStateChange((s) => states.push(s))
      const inbox = new Inbox()
      receiver.onInputMessage('in1', inbox.push)
      const m = new Message('a')
      m.messageId = 'mid-amqp'
      m.setProperty('k/2', 'a&b=c')
      await sender.sendOutputEvent('out1', m)
      const first = await inbox.next()
      assert.equal(first.body.toString(), 'a')
      assert.equal(first.messageId, 'mid-amqp')
      assert.deepEqual(first.properties, { 'k/2': 'a&b=c' })
      assert.equal(first.inputName, 'in1')
      assert.equal(first.connectionModuleId, 'sender')
      // Released: the hub delivers it again at once.
      first.abandon()
      const again = await inbox.next(10_000, 'the abandoned message again')
      assert.equal(again.body.toString(), 'a')
      throwsWith(() => first.complete(), 'INVALID_STATE')
      // Rejected: dropped; the next message is the next one sent.
      again.reject()
      throwsWith(() => again.reject(), 'INVALID_STATE')
      await sender.sendOutputEvent('out1', new Message('b'))
      const b = await inbox.next()
      assert.equal(b.body.toString(), 'b')
      b.complete()
      assert.deepEqual(
        states.filter((s) => !s.connected),
        [],
        'no disconnection: the abandoned message came back without a reconnect'
      )
      // Twin over AMQP; user topics are an MQTT broker feature.
      assert.equal((await receiver.getTwin()).desired.threshold, 25)
      await receiver.updateReported({ transport: 'amqp' })
      assert.equal((await receiver.getTwin()).reported.transport, 'amqp')
      await rejectsWith(receiver.publish('sensors/t', 'x'), 'UNSUPPORTED')
    } finally {
      await receiver.close()
    }
    await firstAfterReconnectIs(hub, sender, options, 'after-amqp')
  })

  test('fromEnvironment reads the AMQP port from EDGEMODULE_AMQP_PORT', T, async () => {
    const vars = await hub.env('other')
    assert.equal(vars.EDGEMODULE_AMQP_PORT, String(hub.amqpPort))
    // No MQTT listener on the MQTT port: the client must use the transport it was given.
    const blocked = { ...vars, EDGEMODULE_MQTT_PORT: String(await closedPort()) }
    const client = await withEnv(blocked, () => ModuleClient.fromEnvironment({ transport: 'amqp', timeoutMs: 10_000, connectTimeoutMs: 15_000 }))
    try {
      assert.equal(client.moduleId, 'other')
      assert.equal(typeof (await client.getTwin()).desired.$version, 'number')
    } finally {
      await client.close()
    }
  })
})

describe('reject() over MQTT', () => {
  let hub

  before(async () => {
    hub = await startHub()
  })

  after(async () => {
    await hub?.stop()
  })

  test('a rejected message is acknowledged: not delivered again after a reconnect', T, async () => {
    const options = hub.options({ transport: 'mqtt' })
    const sender = await ModuleClient.fromConnectionString(await hub.connectionString('sender'), options)
    try {
      const receiver = await ModuleClient.fromConnectionString(await hub.connectionString('receiver'), options)
      try {
        const inbox = new Inbox()
        receiver.onInputMessage('in1', inbox.push)
        await sender.sendOutputEvent('out1', new Message('rejected'))
        const m = await inbox.next()
        assert.equal(m.body.toString(), 'rejected')
        m.reject()
        throwsWith(() => m.complete(), 'INVALID_STATE')
        await receiver.getTwin() // one round trip so the acknowledgement is on the wire
      } finally {
        await receiver.close()
      }
      await firstAfterReconnectIs(hub, sender, options, 'after-mqtt')
    } finally {
      await sender.close()
    }
  })
})

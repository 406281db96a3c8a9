// Runs examples/filter.js as a module against the hub: threshold from the twin, forwarding,
// the `reset` method, and a clean exit on SIGTERM.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'

import { Inbox, sleep, startHub, waitFor } from './hub.mjs'

const require = createRequire(import.meta.url)
const { ModuleClient, Message } = require('../index.js')
const example = join(dirname(fileURLToPath(import.meta.url)), '..', 'examples', 'filter.js')

const deployment = {
  modulesContent: {
    $edgeAgent: { 'properties.desired': { modules: { filter: { type: 'docker' }, src: { type: 'docker' } } } },
    $edgeHub: {
      'properties.desired': {
        schemaVersion: '1.1',
        routes: {
          in: 'FROM /messages/modules/src/outputs/temps INTO BrokeredEndpoint("/modules/filter/inputs/input1")',
          out: 'FROM /messages/modules/filter/outputs/output1 INTO BrokeredEndpoint("/modules/src/inputs/alerts")',
        },
        storeAndForwardConfiguration: { timeToLiveSecs: 7200 },
      },
    },
    filter: { 'properties.desired': { threshold: 25 } },
  },
}

describe('examples/filter.js', () => {
  let hub
  let child
  let src
  before(async () => {
    hub = await startHub(deployment)
    child = spawn(process.execPath, [example], { env: { ...process.env, ...(await hub.env('filter')) } })
    let out = ''
    await waitFor('the filter to start', 20_000, (done) => {
      child.stdout.on('data', (d) => {
        out += d
        if (out.includes('running')) done()
      })
      child.stderr.on('data', (d) => process.stderr.write(d))
    })
    src = await ModuleClient.fromConnectionString(await hub.connectionString('src'), hub.options())
  })
  after(async () => {
    await src?.close()
    if (child && child.exitCode === null) child.kill('SIGKILL')
    await hub?.stop()
  })

  const send = (t) => src.sendOutputEvent('temps', new Message(JSON.stringify({ temperature: t })))

  const reportedThreshold = async (want) => {
    for (let i = 0; i < 100; i++) {
      if ((await hub.twin('filter')).reported?.threshold === want) return
      await sleep(100)
    }
    assert.fail(`reported threshold never became ${want}`)
  }

  test('forwards readings above the desired threshold, follows desired updates, resets', { timeout: 60_000 }, async () => {
    const alerts = new Inbox()
    src.onInputMessage('alerts', (m) => {
      alerts.push(JSON.parse(m.body.toString()).temperature)
      m.complete()
    })
    await reportedThreshold(25)
    await send(20)
    await send(30)
    assert.equal(await alerts.next(10_000, 'an alert'), 30)

    await hub.patchDesired('filter', { threshold: 35 })
    await reportedThreshold(35)
    await send(30)
    await send(40)
    assert.equal(await alerts.next(10_000, 'an alert'), 40)

    const answer = await hub.invoke('filter', 'reset')
    assert.equal(answer.status, 200)
    assert.deepEqual(answer.payload, { threshold: 25 })
    await reportedThreshold(25)
    await send(30)
    assert.equal(await alerts.next(10_000, 'an alert'), 30)
    assert.equal(alerts.items.length, 0)
  })

  test('exits cleanly on SIGTERM', { timeout: 30_000 }, async () => {
    const code = await waitFor('the filter to exit', 10_000, (done) => {
      child.once('exit', (c) => done(c))
      child.kill('SIGTERM')
    })
    assert.equal(code, 0)
  })
})

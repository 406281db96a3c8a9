// The process exits on its own after close(): every handler's thread-safe function is released.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { dirname, join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'

import { startHub } from './hub.mjs'

const index = join(dirname(fileURLToPath(import.meta.url)), '..', 'index.js')

// The child connects, registers every kind of handler, optionally closes, and prints `ready`.
const CHILD = `
const { ModuleClient } = require(process.env.EDGEMODULE_INDEX)
;(async () => {
  const c = await ModuleClient.fromConnectionString(process.env.CS, JSON.parse(process.env.OPTIONS))
  c.onInputMessage('in1', (m) => m.complete())
  c.onInputMessage(null, (m) => m.complete())
  c.onMethod('m', (r) => r.respond(200, null))
  c.onMethod(null, (r) => r.respond(404, null))
  c.onDesiredPropertiesUpdate(() => {})
  c.onConnectionStateChange(() => {})
  if (process.env.CLOSE === '1') await c.close()
  console.log('ready')
})().catch((e) => { console.error(e.code, e.message); process.exit(3) })
`

/** Runs the child; resolves with {code, stdout, ms} or {timedOut: true} after `limitMs`. */
function runChild(env, limitMs) {
  return new Promise((resolve) => {
    const started = Date.now()
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
      resolve({ code, stdout, stderr, ms: Date.now() - started })
    })
  })
}

describe('process lifetime', () => {
  let hub
  let env
  before(async () => {
    hub = await startHub()
    env = {
      EDGEMODULE_INDEX: index,
      CS: await hub.connectionString('receiver'),
      OPTIONS: JSON.stringify(hub.options()),
    }
  })
  after(async () => hub?.stop())

  test('a process exits within a few seconds after close()', { timeout: 30_000 }, async () => {
    const r = await runChild({ ...env, CLOSE: '1' }, 8_000)
    assert.ok(!r.timedOut, `the process did not exit after close(): ${r.stdout} ${r.stderr}`)
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /ready/)
  })

  test('registered handlers keep an open client alive', { timeout: 30_000 }, async () => {
    const r = await runChild({ ...env, CLOSE: '0' }, 3_000)
    assert.ok(r.timedOut, `the process exited with handlers registered: ${r.code} ${r.stderr}`)
    assert.match(r.stdout, /ready/)
  })
})

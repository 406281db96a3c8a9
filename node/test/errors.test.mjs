// Error codes, version and input validation that needs no hub.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'

import { rejectsWith } from './hub.mjs'

const require = createRequire(import.meta.url)
const { ModuleClient, Message, errorCodes } = require('../index.js')
const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const T = { timeout: 30_000 }

/** Asserts that `promise` rejects with an Error whose code is `code`; returns the error. */
test('errorCodes lists every core error kind once, by its canonical name', T, () => {
  const codes = errorCodes()
  assert.ok(codes.length >= 19, `only ${codes.length} codes`)
  assert.equal(new Set(codes).size, codes.length, `duplicate codes (a core kind unknown to Node?): ${codes}`)
  for (const c of codes) assert.match(c, /^[A-Z][A-Z_]*[A-Z]$/)
  for (const c of ['INVALID_ARGUMENT', 'INVALID_STATE', 'TIMEOUT', 'CLOSED', 'NOT_FOUND', 'CONFIGURATION']) {
    assert.ok(codes.includes(c), c)
  }
})

test('the ErrorCode type in index.d.ts lists exactly errorCodes()', T, () => {
  const dts = readFileSync(join(root, 'index.d.ts'), 'utf8')
  const m = /export type ErrorCode = ([^\n]+)/.exec(dts)
  assert.ok(m, 'index.d.ts declares ErrorCode')
  const typed = [...m[1].matchAll(/'([A-Z_]+)'/g)].map((x) => x[1])
  assert.deepEqual([...typed].sort(), [...errorCodes()].sort())
})

test('package.json version equals the Cargo workspace version', T, () => {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
  const cargo = readFileSync(join(root, '..', 'Cargo.toml'), 'utf8')
  const ws = /\[workspace\.package\][^[]*?\nversion\s*=\s*"([^"]+)"/.exec(cargo)
  assert.ok(ws, 'workspace.package.version in Cargo.toml')
  assert.equal(pkg.version, ws[1])
  assert.equal(pkg.name, 'edgemodule')
})

test('a malformed connection string rejects with INVALID_ARGUMENT', T, async () => {
  const e = await rejectsWith(ModuleClient.fromConnectionString('not a connection string'), 'INVALID_ARGUMENT')
  assert.ok(e.message.length > 0)
  assert.equal(e.retryable, false)
})

test('out-of-range options reject with INVALID_ARGUMENT naming the option', T, async () => {
  const cs = 'HostName=h.example;DeviceId=d;ModuleId=m;SharedAccessKey=a2V5'
  let e = await rejectsWith(ModuleClient.fromConnectionString(cs, { keepalive: -1 }), 'INVALID_ARGUMENT')
  assert.match(e.message, /keepalive/)
  e = await rejectsWith(ModuleClient.fromConnectionString(cs, { keepalive: 0 }), 'INVALID_ARGUMENT')
  assert.match(e.message, /keep_alive/)
  e = await rejectsWith(ModuleClient.fromConnectionString(cs, { mqttPort: 70000 }), 'INVALID_ARGUMENT')
  assert.match(e.message, /mqttPort/)
  await rejectsWith(ModuleClient.fromConnectionString(cs, { modelId: 'not-a-dtmi' }), 'INVALID_ARGUMENT')
  await rejectsWith(ModuleClient.fromConnectionString(cs, { timeoutMs: Number.NaN }), 'INVALID_ARGUMENT')
})

test('fromEnvironment without an IoT Edge environment rejects with CONFIGURATION', T, async () => {
  const saved = { ...process.env }
  for (const k of Object.keys(process.env)) {
    if (k.startsWith('IOTEDGE_') || k.startsWith('EdgeHub') || k.startsWith('EdgeModule')) delete process.env[k]
  }
  try {
    const e = await rejectsWith(ModuleClient.fromEnvironment(), 'CONFIGURATION')
    assert.match(e.message, /IOTEDGE_/)
  } finally {
    Object.assign(process.env, saved)
  }
})

test('a Message carries body, system and application properties', T, () => {
  const m = new Message('héllo')
  assert.equal(m.body.toString('utf8'), 'héllo')
  m.body = Buffer.from([1, 2, 3])
  assert.deepEqual([...m.body], [1, 2, 3])
  assert.equal(m.messageId, null)
  m.messageId = 'id-1'
  m.correlationId = 'corr-1'
  m.contentType = 'application/json'
  m.contentEncoding = 'utf-8'
  assert.deepEqual(
    [m.messageId, m.correlationId, m.contentType, m.contentEncoding],
    ['id-1', 'corr-1', 'application/json', 'utf-8'],
  )
  m.setProperty('a', '1')
  m.properties = { ...m.properties, b: '2' }
  assert.deepEqual(m.properties, { a: '1', b: '2' })
  assert.equal(m.getProperty('b'), '2')
  assert.equal(m.getProperty('zzz'), null)
  assert.equal(m.messageId, 'id-1', 'replacing properties keeps system properties')
  m.messageId = null
  assert.equal(m.messageId, null)
  assert.equal(new Message().body.length, 0)
  assert.equal(m.inputName, null)
})

test('completing a message that was not received throws INVALID_STATE', T, () => {
  const m = new Message('x')
  assert.throws(() => m.complete(), (e) => e instanceof Error && e.code === 'INVALID_STATE')
  assert.throws(() => m.abandon(), (e) => e instanceof Error && e.code === 'INVALID_STATE')
})

test('wrong argument types throw TypeErrors from napi', T, () => {
  assert.throws(() => new Message(42))
  assert.throws(() => ModuleClient.fromConnectionString(42))
})

// Starts a real `edgemodule-hub` process on ephemeral 127.0.0.1 ports with a temp state dir and a
// deployment, and talks to it through its CLI (status, env, connection-string, invoke, twin, send).
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const here = dirname(fileURLToPath(import.meta.url))
const run = promisify(execFile)

export const HUB_BIN = process.env.EDGEMODULE_HUB_BIN
  ? resolve(process.env.EDGEMODULE_HUB_BIN)
  : resolve(here, '../../target/debug/edgemodule-hub')

/** Three modules and routes: sender/out1 -> receiver/in1, receiver/* -> sender/back. */
export const DEFAULT_DEPLOYMENT = {
  modulesContent: {
    $edgeAgent: {
      'properties.desired': {
        modules: { sender: { type: 'docker' }, receiver: { type: 'docker' }, other: { type: 'docker' } },
      },
    },
    $edgeHub: {
      'properties.desired': {
        schemaVersion: '1.1',
        routes: {
          toReceiver:
            'FROM /messages/modules/sender/outputs/out1 INTO BrokeredEndpoint("/modules/receiver/inputs/in1")',
          batch: 'FROM /messages/modules/sender/outputs/many INTO BrokeredEndpoint("/modules/receiver/inputs/many")',
          back: 'FROM /messages/modules/receiver/outputs/* INTO BrokeredEndpoint("/modules/sender/inputs/back")',
        },
        storeAndForwardConfiguration: { timeToLiveSecs: 7200 },
      },
    },
    receiver: { 'properties.desired': { threshold: 25 } },
  },
}

const CLI_TIMEOUT_MS = 20_000

export class Hub {
  constructor(dir, child, status, ca) {
    this.dir = dir
    this.child = child
    this.status = status
    this.ca = ca
    this.mqttPort = Number(status.mqtt.split(':').pop())
    this.httpsPort = Number(status.https.split(':').pop())
    this.amqpPort = Number(status.amqp.split(':').pop())
    this.deviceId = status.device
  }

  /** Runs a hub CLI command against this hub's state dir; resolves with stdout. */
  async cli(...args) {
    const { stdout } = await run(HUB_BIN, ['--state-dir', this.dir, ...args], { timeout: CLI_TIMEOUT_MS })
    return stdout
  }

  async connectionString(module) {
    return (await this.cli('connection-string', '--module', module)).trim()
  }

  /** The module's environment as `edgemodule-hub env` prints it, as an object. */
  async env(module) {
    const out = await this.cli('env', '--module', module)
    const vars = {}
    for (const line of out.split('\n')) {
      const m = /^export ([A-Za-z0-9_]+)='(.*)'$/.exec(line.trim())
      if (m) vars[m[1]] = m[2]
    }
    return vars
  }

  /** Client options for this hub: its CA, its ports, short deadlines. */
  options(extra = {}) {
    return {
      ca: this.ca,
      mqttPort: this.mqttPort,
      httpsPort: this.httpsPort,
      amqpPort: this.amqpPort,
      timeoutMs: 10_000,
      connectTimeoutMs: 5_000,
      ...extra,
    }
  }

  /** Invokes a direct method through the hub CLI; resolves with the hub's JSON answer. */
  async invoke(module, method, payload = null, timeoutSeconds = 10) {
    const args = ['--state-dir', this.dir, 'invoke', '--module', module, '--method', method]
    args.push('--payload', JSON.stringify(payload), '--timeout', String(timeoutSeconds))
    try {
      const { stdout } = await run(HUB_BIN, args, { timeout: CLI_TIMEOUT_MS })
      return JSON.parse(stdout)
    } catch (e) {
      if (e.stdout) return JSON.parse(e.stdout)
      throw e
    }
  }

  async twin(module) {
    return JSON.parse(await this.cli('twin', 'get', '--module', module))
  }

  async patchDesired(module, patch) {
    return JSON.parse(await this.cli('twin', 'patch-desired', '--module', module, JSON.stringify(patch)))
  }

  /** Puts a message straight onto a module input. */
  async send(module, input, body, properties = {}) {
    const args = ['send', '--module', module, '--input', input]
    for (const [k, v] of Object.entries(properties)) args.push('--property', `${k}=${v}`)
    args.push('--', body)
    await this.cli(...args)
  }

  async stop() {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((res) => this.child.once('exit', res))
      this.child.kill('SIGTERM')
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 5_000)
      await exited
      clearTimeout(timer)
    }
    await rm(this.dir, { recursive: true, force: true })
  }
}

/** Starts a hub and waits until `status` answers (at most 20 s). */
export async function startHub(deployment = DEFAULT_DEPLOYMENT) {
  const dir = await mkdtemp(join(tmpdir(), 'edgemodule-node-'))
  await run(HUB_BIN, ['init', '--state-dir', dir], { timeout: CLI_TIMEOUT_MS })
  const file = join(dir, 'deployment.json')
  await writeFile(file, JSON.stringify(deployment))
  const child = spawn(
    HUB_BIN,
    [
      'start', '--deployment', file, '--state-dir', dir, '--bind', '127.0.0.1',
      '--mqtt-port', '0', '--https-port', '0', '--amqp-port', '0',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  )
  let stderr = ''
  child.stderr.on('data', (d) => {
    stderr += d
  })
  const deadline = Date.now() + 20_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`edgemodule-hub exited with ${child.exitCode}: ${stderr}`)
    try {
      const { stdout } = await run(HUB_BIN, ['status', '--state-dir', dir], { timeout: 5_000 })
      const status = JSON.parse(stdout)
      const ca = await readFile(join(dir, 'ca.pem'), 'utf8')
      return new Hub(dir, child, status, ca)
    } catch (e) {
      if (Date.now() > deadline) {
        child.kill('SIGKILL')
        throw new Error(`edgemodule-hub did not answer status within 20 s: ${e.message}\n${stderr}`)
      }
      await new Promise((r) => setTimeout(r, 100))
    }
  }
}

/** Resolves with the first value `register(resolve)` delivers, or rejects after `ms`. */
export function waitFor(what, ms, register) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)
    register((v) => {
      clearTimeout(timer)
      resolve(v)
    })
  })
}

/** Collects values pushed by a handler; `next(ms)` resolves with the next one. */
export class Inbox {
  constructor() {
    this.items = []
    this.waiters = []
  }

  push = (v) => {
    const w = this.waiters.shift()
    if (w) w(v)
    else this.items.push(v)
  }

  next(ms = 10_000, what = 'a delivery') {
    if (this.items.length) return Promise.resolve(this.items.shift())
    return new Promise((resolve, reject) => {
      const waiter = (v) => {
        clearTimeout(timer)
        resolve(v)
      }
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter)
        reject(new Error(`timed out after ${ms} ms waiting for ${what}`))
      }, ms)
      this.waiters.push(waiter)
    })
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** Awaits `promise`, asserts it rejects with an `Error` whose `code` is `code`, returns the error. */
export async function rejectsWith(promise, code) {
  let caught
  try {
    await promise
  } catch (e) {
    caught = e
  }
  assert.ok(caught instanceof Error, `expected a rejection with ${code}, got ${caught}`)
  assert.equal(caught.code, code, caught.message)
  return caught
}

/** A loopback port with no listener. */
export async function closedPort() {
  const server = createServer()
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address()
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** Runs `make()` (which may return a Promise) with `vars` added to `process.env`, then restores
 * every one of them, whether it succeeded or not. */
export async function withEnv(vars, make) {
  const saved = { ...process.env }
  Object.assign(process.env, vars)
  try {
    return await make()
  } finally {
    for (const k of Object.keys(vars)) {
      if (k in saved) process.env[k] = saved[k]
      else delete process.env[k]
    }
  }
}

// The Node conformance agent: one command per stdin line (`verb key=value ...`, values
// percent-encoded), one public `edgemodule` call per command, one result line (`ok ...` or
// `err CODE message`), plus `event ...` lines for handler calls. See tests/xlang/README.md.

import { createRequire } from 'node:module'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import path from 'node:path'

const here = path.dirname(fileURLToPath(import.meta.url))
let edge
try {
  edge = createRequire(import.meta.url)(path.join(here, '../../../node'))
} catch (e) {
  process.stdout.write(`skip the Node addon cannot be loaded (${String(e.message).split('\n')[0]})\n`)
  process.exit(0)
}
const { ModuleClient, Message } = edge

const FEATURES = 'handler_defer,method_defer,invoke'
const enc = (s) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase())
const dec = (s) => decodeURIComponent(s)
const say = (line) => process.stdout.write(line + '\n')
const held = new Map()
let nextId = 0
const hold = (obj) => {
  const id = String(++nextId)
  if (obj !== undefined) held.set(id, obj)
  return id
}
const take = (a, keep = false) => {
  const obj = held.get(a.id)
  if (obj === undefined) throw agentError('unknown id')
  if (!keep) held.delete(a.id)
  return obj
}
const agentError = (message) => Object.assign(new Error(message), { agent: true })
let client = null
const need = () => {
  if (!client) throw agentError('not connected')
  return client
}

function messageFields (m) {
  const parts = ['body=' + enc(m.body.toString('utf8'))]
  for (const [key, value] of [['input', m.inputName], ['mid', m.messageId], ['cid', m.correlationId],
    ['ct', m.contentType], ['ce', m.contentEncoding], ['cmid', m.connectionModuleId]]) {
    if (value !== null && value !== undefined) parts.push(`${key}=${enc(value)}`)
  }
  const props = Object.entries(m.properties)
  parts.push(`nprops=${props.length}`)
  for (const [k, v] of props) parts.push(`p.${enc(k)}=${enc(v)}`)
  return parts.join(' ')
}

function options (a) {
  const o = {}
  if (a.timeout_ms) o.timeoutMs = Number(a.timeout_ms)
  if (a.connect_timeout_ms) o.connectTimeoutMs = Number(a.connect_timeout_ms)
  if (a.sas_ttl) { o.sasTtl = Number(a.sas_ttl); o.sasRenewalMargin = Number(a.sas_margin) }
  if (a.mqtt_port) o.mqttPort = Number(a.mqtt_port)
  if (a.https_port) o.httpsPort = Number(a.https_port)
  if (a.amqp_port) o.amqpPort = Number(a.amqp_port)
  if (a.transport !== undefined) o.transport = a.transport
  if (a.proxy !== undefined) o.proxy = a.proxy
  if (a.ca) o.ca = a.ca
  return o
}

const json = (v) => enc(JSON.stringify(v === undefined ? null : v))

async function run (verb, a) {
  switch (verb) {
    case 'connect_env': client = await ModuleClient.fromEnvironment(options(a)); return ''
    case 'connect_cs': client = await ModuleClient.fromConnectionString(a.cs, options(a)); return ''
    case 'ids': return `device=${enc(need().deviceId)} module=${enc(need().moduleId)}`
    case 'close': await need().close(); return ''
    case 'send': {
      const m = new Message(a.body_size ? 'x'.repeat(Number(a.body_size)) : (a.body ?? ''))
      if (a.mid !== undefined) m.messageId = a.mid
      if (a.cid !== undefined) m.correlationId = a.cid
      if (a.ct !== undefined) m.contentType = a.ct
      if (a.ce !== undefined) m.contentEncoding = a.ce
      for (const [k, v] of Object.entries(a)) if (k.startsWith('p.')) m.setProperty(k.slice(2), v)
      await need().sendOutputEvent(a.output, m)
      return ''
    }
    case 'on_input': {
      const handler = a.input ?? '*'
      const defer = a.mode === 'defer'
      need().onInputMessage(a.input ?? null, (m) => {
        const id = hold(defer ? m : undefined)
        say(`event msg handler=${enc(handler)} id=${id} ${messageFields(m)}`)
        if (!defer) m.complete()
      })
      return ''
    }
    case 'complete': take(a, true).complete(); return ''
    case 'abandon': take(a, true).abandon(); return ''
    case 'reject': take(a, true).reject(); return ''
    case 'on_method': {
      const handler = a.name ?? '*'
      const defer = a.mode === 'defer'
      const status = Number(a.status ?? '200')
      need().onMethod(a.name ?? null, (req) => {
        const id = hold(defer ? req : undefined)
        say(`event method handler=${enc(handler)} name=${enc(req.methodName)} id=${id} payload=${json(req.payload)}`)
        if (!defer) req.respond(status, { handler, request: req.payload }).catch(() => {})
      })
      return ''
    }
    case 'respond': await take(a).respond(Number(a.status), a.payload ? JSON.parse(a.payload) : null); return ''
    case 'on_desired':
      need().onDesiredPropertiesUpdate((patch) => say(`event desired patch=${json(patch)}`))
      return ''
    case 'get_twin': {
      const t = await need().getTwin()
      return `twin=${json({ desired: t.desired, reported: t.reported })}`
    }
    case 'patch_reported': await need().updateReported(JSON.parse(a.patch)); return ''
    case 'invoke': {
      const params = { methodName: a.method, payload: a.payload ? JSON.parse(a.payload) : null }
      if (a.response_timeout) params.responseTimeoutInSeconds = Number(a.response_timeout)
      if (a.connect_timeout) params.connectTimeoutInSeconds = Number(a.connect_timeout)
      const r = await need().invokeMethod(a.device, a.module ?? null, params)
      return `status=${r.status} payload=${json(r.payload)}`
    }
    case 'publish': {
      const options = { retain: a.retain === 'true' }
      if (a.qos !== undefined) options.qos = Number(a.qos)
      if (a.timeout_ms !== undefined) options.timeoutMs = Number(a.timeout_ms)
      await need().publish(a.topic, a.payload_size ? 'x'.repeat(Number(a.payload_size)) : (a.payload ?? ''), options)
      return ''
    }
    case 'subscribe': {
      const filter = a.filter
      await need().subscribe(filter, (m) => {
        say(`event topic filter=${enc(filter)} topic=${enc(m.topic)} payload=${enc(m.payload.toString('utf8'))} qos=${m.qos} retain=${m.retain}`)
      })
      return ''
    }
    case 'unsubscribe': await need().unsubscribe(a.filter); return ''
    default: throw agentError(`unknown verb ${verb}`)
  }
}

say(`hello lang=node features=${FEATURES}`)
const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })
for await (const line of lines) {
  const words = line.split(/\s+/).filter((w) => w)
  if (words.length === 0) continue
  if (words[0] === 'quit') break
  const args = {}
  for (const w of words.slice(1)) {
    const i = w.indexOf('=')
    args[w.slice(0, i).split('.').map(dec).join('.')] = dec(w.slice(i + 1))
  }
  try {
    const fields = await run(words[0], args)
    say(fields ? `ok ${fields}` : 'ok')
  } catch (e) {
    if (e.agent) say(`err AGENT ${e.message}`)
    else if (typeof e.code === 'string' && /^[A-Z_]+$/.test(e.code)) say(`err ${e.code} ${String(e.message).split('\n')[0]}`)
    else say(`err NOT_EDGE_ERROR ${e.name}: ${String(e.message).split('\n')[0]}`)
  }
}
lines.close()
if (client) await client.close().catch(() => {})


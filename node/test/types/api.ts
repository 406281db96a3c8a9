// Type-checked with `tsc --noEmit -p test/types`: the public API as a TypeScript module uses it.
// Buffer comes from Node's types, which this check does not load, so declare the shape used.
declare global {
  interface Buffer extends Uint8Array {
    toString(encoding?: string): string
  }
}

import {
  type ClientOptions,
  type ConnectionState,
  type ErrorCode,
  type MethodResult,
  type PublishOptions,
  type TopicMessage,
  type Twin,
  Message,
  MethodRequest,
  ModuleClient,
  errorCodes,
} from '../../index.js'

export async function usage(cs: string, ca: string): Promise<void> {
  const options: ClientOptions = {
    ca,
    keepalive: 60,
    sasTtl: 3600,
    sasRenewalMargin: 300,
    timeoutMs: 10_000,
    connectTimeoutMs: 5_000,
    mqttPort: 8883,
    httpsPort: 443,
    amqpPort: 5671,
    transport: 'mqtt_ws',
    proxy: 'http://proxy.local:3128',
    productInfo: 'example/1.0',
    retry: { enabled: true, initialDelayMs: 100, maxDelayMs: 10_000, giveUpAfterMs: 60_000 },
  }
  const client: ModuleClient = await ModuleClient.fromConnectionString(cs, options)
  const fromEnv: ModuleClient = await ModuleClient.fromEnvironment()
  await fromEnv.close()

  const msg = new Message('{"t":1}')
  msg.messageId = 'id'
  msg.correlationId = null
  msg.contentType = 'application/json'
  msg.contentEncoding = 'utf-8'
  msg.setProperty('k', 'v')
  msg.properties = { ...msg.properties, other: 'x' }
  const sent: void = await client.sendOutputEvent('out1', msg)
  await client.sendOutputEventBatch('out1', [msg, new Message(msg.body)])

  client.onInputMessage('in1', (m: Message) => {
    const input: string | null = m.inputName
    const text: string = m.body.toString('utf8')
    setTimeout(() => (text.length > 0 && input ? m.complete() : m.abandon()), 10)
  })
  client.onInputMessage(null, async (m) => m.complete())
  client.onInputMessage('in2', (m: Message) => {
    const settled: void = m.reject()
    return settled
  })

  const twin: Twin = await client.getTwin()
  const threshold: number = twin.desired.threshold
  await client.updateReported({ threshold })
  client.onDesiredPropertiesUpdate((patch) => {
    const v: unknown = patch['$version']
    return v
  })

  client.onMethod('reset', (req: MethodRequest) => {
    const name: string = req.methodName
    setTimeout(() => void req.respond(200, { name, payload: req.payload }), 10)
  })
  client.onMethod(null, (req) => req.respond(404))

  const result: MethodResult = await client.invokeMethod('device', 'module', {
    methodName: 'ping',
    payload: { a: 1 },
    responseTimeoutInSeconds: 30,
    connectTimeoutInSeconds: 0,
  })
  const status: number = result.status

  client.onConnectionStateChange((s: ConnectionState) => {
    if (!s.connected && s.reason === 'RETRY_EXPIRED') console.log('gave up')
  })
  const state: ConnectionState = client.connectionState

  const publishOptions: PublishOptions = { qos: 0, retain: true, timeoutMs: 5_000 }
  const published: void = await client.publish('sensors/kitchen/temp', '21.5', publishOptions)
  await client.publish('sensors/raw', msg.body)
  await client.subscribe('sensors/+/temp', (m: TopicMessage) => {
    const topic: string = m.topic
    const celsius: string = m.payload.toString('utf8')
    const qos: number = m.qos
    const retained: boolean = m.retain
    console.log(topic, celsius, qos, retained)
  })
  await client.unsubscribe('sensors/+/temp')

  try {
    await client.close()
  } catch (e) {
    const code: ErrorCode = (e as Error & { code: ErrorCode }).code
    if (code === 'CLOSED' || code === 'TIMEOUT') console.log(code)
  }
  const codes: ErrorCode[] = errorCodes()
  console.log(sent, published, status, state.reason, codes.length, client.deviceId, client.moduleId)
}

declare const console: { log(...args: unknown[]): void }
declare function setTimeout(f: () => void, ms: number): unknown

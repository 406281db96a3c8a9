// The demo's alert module, in Node.js on the edgemodule package (node/ in this repository).
//
// Alerts arrive on input `alerts` (JSON readings the filter found too hot, with the properties
// `threshold` and `seq`). Each one is printed and counted until acknowledged. Direct methods:
//   status -> 200 {alerts, unacknowledged, byThreshold, last}
//   ack    -> 200 {acknowledged, by}: marks every alert so far as acknowledged
//             (payload {"by": "name"} optional)
// Run it as a module: edgemodule-hub run --module alert -- node examples/demo/alert.js
'use strict'
const path = require('node:path')
const { ModuleClient } = require(process.env.EDGEMODULE_NODE_PACKAGE || path.join(__dirname, '..', '..', 'node'))

const TAG = 'alert (Node)     |'
const say = (text) => console.log(`${TAG} ${text}`)

async function main() {
  const client = await ModuleClient.fromEnvironment()
  let alerts = 0
  let unacknowledged = 0
  let last = null
  const byThreshold = {}

  client.onInputMessage('alerts', (msg) => {
    let reading
    try {
      reading = JSON.parse(msg.body.toString('utf8'))
    } catch {
      say(`ignoring an alert that is not JSON: ${msg.body.toString('utf8').slice(0, 64)}`)
      msg.complete()
      return
    }
    const threshold = msg.properties.threshold ?? '?'
    alerts += 1
    unacknowledged += 1
    byThreshold[threshold] = (byThreshold[threshold] ?? 0) + 1
    last = { seq: reading.seq, temperature: reading.temperature, threshold: Number(threshold) }
    say(`ALERT #${alerts}: ${Number(reading.temperature).toFixed(1)} ${reading.unit ?? ''} at reading ${reading.seq} (threshold ${threshold})`)
    msg.complete()
  })

  client.onMethod('status', async (request) => {
    const answer = { alerts, unacknowledged, byThreshold, last }
    say(`method status -> ${JSON.stringify(answer)}`)
    await request.respond(200, answer)
  })

  client.onMethod('ack', async (request) => {
    const by = typeof request.payload?.by === 'string' ? request.payload.by : 'someone'
    const answer = { acknowledged: unacknowledged, by }
    unacknowledged = 0
    say(`method ack from ${by}: ${answer.acknowledged} alert(s) acknowledged`)
    await request.respond(200, answer)
  })

  let closing = false
  const stop = async () => {
    if (closing) return
    closing = true
    say(`stopping after ${alerts} alert(s)`)
    await client.close() // ends the handlers, so the process exits
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  // Handlers are in place: say so in the reported properties (the demo waits for this).
  await client.updateReported({ ready: true, methods: ['status', 'ack'] })
  say("ready: printing alerts from input 'alerts'; methods 'status' and 'ack'")
}

main().catch((e) => {
  console.error(`${TAG} ${e.code ?? 'ERROR'}: ${e.message}`)
  process.exit(1)
})

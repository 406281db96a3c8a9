// A filter module: forwards messages from input `input1` whose JSON body has `temperature`
// above the desired property `threshold` to output `output1`; method `reset` restores the
// default threshold. Run it with the module's environment, e.g.:
//   edgemodule-hub run --module filter -- node examples/filter.js
'use strict'
const { ModuleClient, Message } = require('..')

const DEFAULT_THRESHOLD = 25

async function main() {
  const client = await ModuleClient.fromEnvironment()
  let threshold = DEFAULT_THRESHOLD

  const applyDesired = (desired) => {
    if (typeof desired?.threshold === 'number') threshold = desired.threshold
  }
  applyDesired((await client.getTwin()).desired)
  await client.updateReported({ threshold })

  client.onDesiredPropertiesUpdate(async (patch) => {
    applyDesired(patch)
    await client.updateReported({ threshold })
  })

  client.onMethod('reset', async (request) => {
    threshold = DEFAULT_THRESHOLD
    await client.updateReported({ threshold })
    await request.respond(200, { threshold })
  })

  client.onInputMessage('input1', async (msg) => {
    let reading
    try {
      reading = JSON.parse(msg.body.toString('utf8'))
    } catch {
      msg.complete() // not JSON: drop it
      return
    }
    if (typeof reading.temperature === 'number' && reading.temperature > threshold) {
      const out = new Message(msg.body)
      out.contentType = 'application/json'
      out.contentEncoding = 'utf-8'
      out.properties = { ...msg.properties, alert: 'true' }
      try {
        await client.sendOutputEvent('output1', out)
      } catch (e) {
        console.error(`forwarding failed (${e.code}): ${e.message}`)
        msg.abandon() // redelivered after a reconnect
        return
      }
    }
    msg.complete()
  })

  const stop = async () => {
    await client.close()
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  console.log(`filter: running with threshold ${threshold}`)
}

main().catch((e) => {
  console.error(`filter: ${e.code ?? ''} ${e.message}`)
  process.exit(1)
})

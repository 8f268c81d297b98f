'use strict'
// kafkajs GZIP round trip through Weir.
//
// Usage: node compression_test.js BOOTSTRAP TOPIC COUNT
//
// TOPIC must exist with one partition. Produces COUNT records in one
// GZIP-compressed batch (kafkajs' only built-in codec; snappy, lz4 and zstd
// need codec plugin packages), then consumes them back with a consumer group
// and checks every key, value and header byte for byte. Record i is:
//   key     "key-<i>"
//   value   "value-<i>-" followed by "abc" repeated (i % 50) times
//   headers {"h": "hv-<i>"}
// (test_kafkajs_group.py builds the same records to check them from Python.)
// Prints a JSON summary on stdout (see common.js for the conventions).

const { CompressionTypes } = require('kafkajs')
const { makeKafka, log, check, waitUntil, runMain } = require('./common')

const [bootstrap, topic, countArg] = process.argv.slice(2)
if (!bootstrap || !topic || !countArg) {
  process.stderr.write('usage: node compression_test.js BOOTSTRAP TOPIC COUNT\n')
  process.exit(2)
}
const COUNT = Number(countArg)
const kafka = makeKafka(bootstrap, 'weir-e2e-kafkajs-gzip')

function record(i) {
  return { key: `key-${i}`, value: `value-${i}-` + 'abc'.repeat(i % 50), headers: { h: `hv-${i}` } }
}

async function main() {
  const t0 = Date.now()
  const producer = kafka.producer({ allowAutoTopicCreation: false })
  await producer.connect()
  const messages = []
  for (let i = 0; i < COUNT; i++) messages.push({ ...record(i), partition: 0 })
  const [result] = await producer.send({ topic, acks: -1, compression: CompressionTypes.GZIP, messages })
  check(result && result.errorCode === 0 && Number(result.baseOffset) === 0,
    `the GZIP batch was acknowledged as ${JSON.stringify(result)}, expected error 0 at base offset 0`)
  await producer.disconnect()
  log(`produced ${COUNT} records in one GZIP batch`)

  const got = new Map() // offset -> {key, value, headers}
  const consumer = kafka.consumer({ groupId: `${topic}-reader`, sessionTimeout: 6000, heartbeatInterval: 500,
    maxWaitTimeInMs: 100 })
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  await consumer.run({
    eachMessage: async ({ message }) => {
      const headers = {}
      for (const [name, value] of Object.entries(message.headers || {})) headers[name] = value.toString()
      got.set(Number(message.offset), {
        key: message.key === null ? null : message.key.toString(),
        value: message.value === null ? null : message.value.toString(),
        headers,
      })
    },
  })
  await waitUntil(() => got.size >= COUNT || Promise.reject(new Error(`${got.size} of ${COUNT} consumed`)),
    { timeoutMs: 30000, what: `${COUNT} records to be consumed` })
  await consumer.disconnect()

  const wrong = []
  for (let i = 0; i < COUNT; i++) {
    const want = record(i)
    const have = got.get(i)
    const same = have && have.key === want.key && have.value === want.value &&
      JSON.stringify(have.headers) === JSON.stringify(want.headers)
    if (!same) {
      wrong.push({ offset: i, want, have })
    }
  }
  check(got.size === COUNT, `consumed ${got.size} distinct offsets, expected ${COUNT}`)
  check(wrong.length === 0, `${wrong.length} records differ, e.g. ${JSON.stringify(wrong.slice(0, 3))}`)
  return { topic, count: COUNT, elapsedMs: Date.now() - t0 }
}

runMain(main, { watchdogMs: 90000 })

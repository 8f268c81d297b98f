'use strict'
// Shared bits of the kafkajs end-to-end scripts (run by tests/e2e/test_kafkajs_*.py).
//
// Conventions: the scripts print exactly one JSON object on stdout (their
// summary) and everything else on stderr; they exit 0 when every check
// passed and 1 with a message on stderr otherwise. Every wait is bounded.

const { Kafka, logLevel } = require('kafkajs')

// kafkajs 2 prints a warning about its default partitioner on every producer.
process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1'

const started = Date.now()

function log(...args) {
  const t = ((Date.now() - started) / 1000).toFixed(2)
  process.stderr.write(`[${t}s] ${args.join(' ')}\n`)
}

// kafkajs logs to stdout by default; send its log to stderr so stdout holds
// only the summary.
const stderrLogCreator = () => ({ namespace, level, label, log: entry }) => {
  const { message, ...extra } = entry
  log(`kafkajs ${label} [${namespace}] ${message} ${JSON.stringify(extra)}`)
}

function makeKafka(bootstrap, clientId) {
  return new Kafka({
    clientId,
    brokers: [bootstrap],
    logLevel: logLevel.WARN,
    logCreator: stderrLogCreator,
    connectionTimeout: 5000,
    requestTimeout: 20000,
    retry: { initialRetryTime: 100, retries: 8, maxRetryTime: 2000 },
  })
}

class CheckFailed extends Error {}

function check(condition, message) {
  if (!condition) throw new CheckFailed(message)
}

// Poll `probe` (async, returns a truthy value when done) every `intervalMs`
// until it succeeds or `timeoutMs` passes; then throw with `what` and the
// probe's last result or error.
async function waitUntil(probe, { timeoutMs, intervalMs = 100, what }) {
  const deadline = Date.now() + timeoutMs
  let last
  for (;;) {
    try {
      const value = await probe()
      if (value) return value
      last = value
    } catch (e) {
      last = e
    }
    if (Date.now() >= deadline) {
      const detail = last instanceof Error ? last.message : JSON.stringify(last)
      throw new CheckFailed(`timed out after ${timeoutMs} ms waiting for ${what}; last result: ${detail}`)
    }
    await sleep(intervalMs)
  }
}

function sleep(ms) {
  return new Promise(resolve => setTimeout(resolve, ms))
}

// Run `main`; print its summary as JSON on stdout and exit 0, or report the
// failure on stderr and exit 1. A watchdog ends a run that hangs anyway.
function runMain(main, { watchdogMs }) {
  const watchdog = setTimeout(() => {
    log(`FAILED: watchdog: the script did not finish within ${watchdogMs} ms`)
    process.exit(1)
  }, watchdogMs)
  watchdog.unref()
  main()
    .then(summary => {
      process.stdout.write(JSON.stringify(summary) + '\n')
      process.exit(0)
    })
    .catch(err => {
      log(`FAILED: ${err instanceof CheckFailed ? err.message : err && err.stack ? err.stack : err}`)
      process.exit(1)
    })
}

module.exports = { makeKafka, log, check, waitUntil, sleep, runMain, CheckFailed }

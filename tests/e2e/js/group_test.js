'use strict'
// A kafkajs consumer group on Weir, across rebalances.
//
// Usage: node group_test.js BOOTSTRAP TOPIC [GROUP]
//
// Creates TOPIC with 6 partitions (kafkajs admin), then:
//   1. three consumers join GROUP; the six partitions are split between them;
//   2. phase 1 records are produced and consumed;
//   3. one consumer disconnects (leaves the group); the other two take over
//      its partitions; phase 2 records are produced and consumed;
//   4. a fourth consumer joins; the partitions are split three ways again;
//      phase 3 records are produced and consumed;
//   5. every produced id was consumed at least once (duplicates across
//      rebalances are allowed, nothing may be missing), the committed
//      offsets reach the end of every partition (lag 0) before and after the
//      consumers disconnect, and the group is then Empty.
// Prints a JSON summary on stdout (see common.js for the conventions).

const { makeKafka, log, check, waitUntil, runMain } = require('./common')

const [bootstrap, topic, groupArg] = process.argv.slice(2)
if (!bootstrap || !topic) {
  process.stderr.write('usage: node group_test.js BOOTSTRAP TOPIC [GROUP]\n')
  process.exit(2)
}
const groupId = groupArg || `${topic}-group`
const PARTITIONS = 6
const PER_PHASE = Number(process.env.WEIR_JS_RECORDS_PER_PHASE || 1000)
const kafka = makeKafka(bootstrap, 'weir-e2e-kafkajs')

const seen = new Map() // id -> times consumed

class Member {
  constructor(name) {
    this.name = name
    this.assignment = [] // partitions of TOPIC from the last completed join
    this.memberId = null
    this.joins = 0
    this.consumed = 0
    this.crashes = []
    this.active = false
    this.consumer = kafka.consumer({
      groupId,
      sessionTimeout: 6000,
      heartbeatInterval: 500,
      rebalanceTimeout: 15000,
      maxWaitTimeInMs: 100,
      retry: { initialRetryTime: 100, retries: 8, maxRetryTime: 2000 },
    })
    const { GROUP_JOIN, CRASH } = this.consumer.events
    this.consumer.on(GROUP_JOIN, ({ payload }) => {
      this.joins += 1
      this.memberId = payload.memberId
      this.assignment = [...(payload.memberAssignment[topic] || [])].sort((a, b) => a - b)
      log(`${this.name} joined (${payload.isLeader ? 'leader' : 'follower'}, ${payload.groupProtocol}) ` +
          `member ${payload.memberId}: partitions [${this.assignment}]`)
    })
    this.consumer.on(CRASH, ({ payload }) => {
      this.crashes.push(String(payload.error))
      log(`${this.name} crashed: ${payload.error} (restart: ${payload.restart})`)
    })
  }

  async start() {
    this.active = true
    await this.consumer.connect()
    await this.consumer.subscribe({ topics: [topic], fromBeginning: true })
    await this.consumer.run({
      // Auto commit is on (kafkajs' default): offsets of processed
      // messages are committed after each batch.
      eachMessage: async ({ message }) => {
        const id = Number(message.value.toString())
        seen.set(id, (seen.get(id) || 0) + 1)
        this.consumed += 1
      },
    })
  }

  async stop() {
    this.active = false
    await this.consumer.disconnect()
    log(`${this.name} disconnected after consuming ${this.consumed} records`)
  }

  describe() {
    return { name: this.name, memberId: this.memberId, joins: this.joins, consumed: this.consumed,
      assignment: this.assignment, crashes: this.crashes }
  }
}

// The active members' latest assignments split all partitions between them:
// disjoint, complete, nobody empty-handed. A member that has not rejoined yet
// still shows its old assignment, which then overlaps or leaves a hole.
function balanced(members) {
  const active = members.filter(m => m.active)
  const owned = active.flatMap(m => m.assignment)
  const distinct = new Set(owned)
  const ok = active.every(m => m.assignment.length > 0) && owned.length === PARTITIONS && distinct.size === PARTITIONS
  return ok ? true : active.map(m => `${m.name}:[${m.assignment}]`).join(' ')
}

async function waitBalanced(members, what) {
  const result = await waitUntil(() => balanced(members) === true || Promise.reject(new Error(balanced(members))),
    { timeoutMs: 40000, intervalMs: 100, what })
  log(`balanced: ${members.filter(m => m.active).map(m => `${m.name}:[${m.assignment}]`).join(' ')}`)
  return result
}

async function produce(producer, from, to) {
  for (let start = from; start < to; start += 250) {
    const end = Math.min(start + 250, to)
    const messages = []
    for (let i = start; i < end; i++) messages.push({ key: `k${i}`, value: String(i) })
    await producer.send({ topic, acks: -1, messages })
  }
  log(`produced ids ${from}..${to - 1}`)
}

async function waitConsumed(upTo, what) {
  await waitUntil(() => {
    let missing = 0
    for (let i = 0; i < upTo; i++) if (!seen.has(i)) missing += 1
    return missing === 0 || Promise.reject(new Error(`${missing} of ${upTo} ids not consumed yet`))
  }, { timeoutMs: 40000, intervalMs: 100, what })
  log(`consumed every id below ${upTo}`)
}

// {partition: [committed, high]} from kafkajs admin: fetchOffsets (the
// group's committed offsets, OffsetFetch) and fetchTopicOffsets (ListOffsets).
async function offsets(admin) {
  const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] })
  check(committed && committed.topic === topic, `fetchOffsets answered ${JSON.stringify(committed)}`)
  const ends = await admin.fetchTopicOffsets(topic)
  const result = {}
  for (const { partition, high } of ends) result[partition] = [null, Number(high)]
  for (const { partition, offset } of committed.partitions) {
    check(partition in result, `fetchOffsets returned unknown partition ${partition}`)
    result[partition][0] = Number(offset)
  }
  return result
}

function lagZero(byPartition) {
  const behind = Object.entries(byPartition).filter(([, [committed, high]]) => committed !== high)
  return behind.length === 0 && Object.keys(byPartition).length === PARTITIONS
    ? true
    : `partitions [committed, high]: ${JSON.stringify(byPartition)}`
}

async function main() {
  const t0 = Date.now()
  const admin = kafka.admin()
  await admin.connect()
  const created = await admin.createTopics({
    topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }],
    waitForLeaders: true,
    timeout: 15000,
  })
  check(created === true, `createTopics(${topic}) returned ${created}: the topic already existed`)
  const metadata = await admin.fetchTopicMetadata({ topics: [topic] })
  check(metadata.topics[0].partitions.length === PARTITIONS,
    `metadata shows ${metadata.topics[0].partitions.length} partitions, expected ${PARTITIONS}`)

  const producer = kafka.producer({ allowAutoTopicCreation: false })
  await producer.connect()

  // 1. Three members.
  const members = [new Member('c1'), new Member('c2'), new Member('c3')]
  await Promise.all(members.map(m => m.start()))
  await waitBalanced(members, 'three members to share the six partitions')

  // 2. Phase 1: every member gets a share.
  await produce(producer, 0, PER_PHASE)
  await waitConsumed(PER_PHASE, 'phase 1 records')
  for (const m of members) check(m.consumed > 0, `${m.name} consumed nothing in phase 1`)

  // 3. c2 leaves; c1 and c3 take over; phase 2 is produced straight away, so
  //    part of it may be consumed while the group rebalances.
  await members[1].stop()
  await produce(producer, PER_PHASE, 2 * PER_PHASE)
  await waitBalanced(members, 'c1 and c3 to take over the partitions of c2')
  await waitConsumed(2 * PER_PHASE, 'phase 2 records')

  // 4. c4 joins; once the partitions are split three ways again, phase 3 is
  //    produced, and c4 must get its share.
  const c4 = new Member('c4')
  members.push(c4)
  await c4.start()
  await waitBalanced(members, 'c1, c3 and c4 to share the six partitions')
  const before4 = members.map(m => m.consumed)
  await produce(producer, 2 * PER_PHASE, 3 * PER_PHASE)
  await waitConsumed(3 * PER_PHASE, 'phase 3 records')
  await producer.disconnect()
  members.forEach((m, i) => {
    if (m.active) check(m.consumed > before4[i], `${m.name} (partitions [${m.assignment}]) consumed nothing in phase 3`)
  })

  // 5. Committed offsets reach the end of every partition (auto commit runs
  //    after each batch), and stay there once every consumer has left.
  const before = await waitUntil(async () => {
    const now = await offsets(admin)
    const zero = lagZero(now)
    return zero === true ? now : Promise.reject(new Error(zero))
  }, { timeoutMs: 20000, intervalMs: 200, what: 'the group to commit the end of every partition' })
  for (const m of members.filter(m => m.active)) await m.stop()
  const after = await offsets(admin)
  const zero = lagZero(after)
  check(zero === true, `after the consumers disconnected the lag is not 0: ${zero}`)
  let total = 0
  for (const [, [committed]] of Object.entries(after)) total += committed
  check(total === 3 * PER_PHASE, `committed offsets add up to ${total}, expected ${3 * PER_PHASE} records`)

  const { groups } = await admin.describeGroups([groupId])
  check(groups.length === 1 && groups[0].groupId === groupId, `describeGroups answered ${JSON.stringify(groups)}`)
  check(groups[0].state === 'Empty' && groups[0].members.length === 0,
    `after every member left the group should be Empty, got state ${groups[0].state} with ` +
    `${groups[0].members.length} members`)
  const listed = await admin.listGroups()
  check(listed.groups.some(g => g.groupId === groupId), `listGroups does not show ${groupId}: ${JSON.stringify(listed)}`)
  await admin.disconnect()

  let duplicates = 0
  for (const [, n] of seen) duplicates += n - 1
  const missing = []
  for (let i = 0; i < 3 * PER_PHASE; i++) if (!seen.has(i)) missing.push(i)
  check(missing.length === 0, `ids never consumed: ${missing.slice(0, 20)}`)
  const crashes = members.flatMap(m => m.crashes.map(c => `${m.name}: ${c}`))
  check(crashes.length === 0, `consumers crashed: ${crashes.join('; ')}`)

  return {
    groupId,
    topic,
    produced: 3 * PER_PHASE,
    unique: seen.size,
    duplicates,
    committedBeforeDisconnect: before,
    committedAfterDisconnect: after,
    members: members.map(m => m.describe()),
    elapsedMs: Date.now() - t0,
  }
}

runMain(main, { watchdogMs: 150000 })

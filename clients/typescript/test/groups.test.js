'use strict';
// Groups with members from Node (issue 13): two GroupConsumers split the partitions, a revocation
// commits before it releases, a leave moves partitions, a fenced commit fails.

const { test, beforeEach, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const { status } = require('@grpc/grpc-js');
const { ObeliskError } = require('../src');
const { unary } = require('../src/client');
const { startBroker } = require('../test-support/fixtures');

let broker;
beforeEach(async () => { broker = await startBroker(); });
afterEach(async () => { await broker.close(); });

const DEADLINE_MS = 20_000;
const id = (r) => `${r.partition}/${r.offset}`;

test('two members split the partitions; revocations commit first; a leave moves them', async () => {
  const { client } = broker;
  await client.createTopic('gt', { partitions: 4 });
  const records = [];
  for (let p = 0; p < 4; p += 1) for (let i = 0; i < 5; i += 1) records.push({ value: `${p}-${i}`, partition: p });
  await client.produce('gt', records);
  const events = [];
  const a = await client.groupConsumer('ng', ['gt'], {
    maxWaitMs: 200, onRevoked: (ps) => events.push(`revoked ${ps.length}`),
  });
  assert.equal(a.assignment.length, 4);
  let seenA = [];
  while (seenA.length < 8) seenA = seenA.concat(await a.poll());
  await a.commit();
  const committed = new Set(seenA.map(id));
  const b = await client.groupConsumer('ng', ['gt'], { maxWaitMs: 200 });
  let seenB = [];
  const deadline = Date.now() + DEADLINE_MS;
  while (seenA.length + seenB.length < 20 || a.assignment.length !== 2 || b.assignment.length !== 2) {
    assert.ok(Date.now() < deadline, JSON.stringify([a.assignment, b.assignment]));
    seenA = seenA.concat(await a.poll());
    seenB = seenB.concat(await b.poll());
  }
  assert.ok(events.includes('revoked 2'));
  assert.ok(seenB.every((r) => !committed.has(id(r))), 'committed records are not delivered again');
  assert.equal(new Set([...seenA, ...seenB].map(id)).size, 20);
  const d = await client.describeGroup('ng');
  assert.equal(d.state, 'stable');
  assert.equal(d.members.length, 2);
  const theirs = b.assignment[0].partition;
  await assert.rejects(
    unary(client.stub, 'Commit', {
      topic: 'gt', group: 'ng', offsets: [{ partition: theirs, offset: '0' }], memberId: a.memberId, memberEpoch: a.memberEpoch,
    }, 5000),
    (err) => err instanceof ObeliskError && err.code === status.FAILED_PRECONDITION,
  );
  await assert.rejects(client.deleteGroup('ng'), (err) => err.code === status.FAILED_PRECONDITION);
  await a.close();
  const deadline2 = Date.now() + DEADLINE_MS;
  while (b.assignment.length !== 4) {
    assert.ok(Date.now() < deadline2);
    await b.poll();
  }
  await b.close();
  await client.deleteGroup('ng');
});

test('a fenced member is told it lost its partitions and rejoins', async () => {
  const { client } = broker;
  await client.createTopic('gf', { partitions: 2 });
  const lost = [];
  const a = await client.groupConsumer('tf', ['gf'], {
    instanceId: 'host-a', maxWaitMs: 200, onLost: (ps) => lost.push(ps.length),
  });
  const firstEpoch = BigInt(a.memberEpoch);
  assert.equal(a.assignment.length, 2);
  // Another process takes over the same instance id: this one is fenced (its stream ends).
  const b = await client.groupConsumer('tf', ['gf'], { instanceId: 'host-a', maxWaitMs: 200 });
  const deadline = Date.now() + DEADLINE_MS;
  while (BigInt(a.memberEpoch) === firstEpoch) {
    assert.ok(Date.now() < deadline, 'never rejoined');
    await a.poll();
  }
  assert.deepEqual(lost, [2]);
  assert.ok(BigInt(a.memberEpoch) > BigInt(b.memberEpoch));
  assert.equal(a.assignment.length, 2, 'rejoined with the instance\'s partitions');
  await a.close();
  b._session?.close();
});

'use strict';
// Shared groups from Node (issue 14): workers take records locked to them one by one, a released
// record comes back with its delivery counted, a rejected one lands in the dead-letter topic with
// its origin headers, and every record ends accepted once or dead-lettered once.

const { test, beforeEach, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const { unary } = require('../src/client');
const { startBroker } = require('../test-support/fixtures');

let broker;
beforeEach(async () => { broker = await startBroker(); });
afterEach(async () => { await broker.close(); });

const id = (d) => `${d.record.partition}/${d.record.offset}`;

test('shared consumers settle records one by one', async () => {
  const { client } = broker;
  await client.createTopic('st', { partitions: 2 });
  const records = [];
  for (let i = 0; i < 10; i += 1) records.push({ value: `v${i}`, partition: i % 2 });
  await client.produce('st', records);
  const a = client.sharedConsumer('st', 'sg', { memberId: 'a', maxRecords: 4, maxWaitMs: 200 });
  const b = client.sharedConsumer('st', 'sg', { memberId: 'b', maxRecords: 100, maxWaitMs: 200 });
  const gotA = await a.poll();
  assert.equal(gotA.length, 4);
  assert.ok(gotA.every((d) => d.deliveries === 1));
  const gotB = await b.poll();
  assert.equal(gotB.length, 6);
  const heldByA = new Set(gotA.map(id));
  assert.ok(gotB.every((d) => !heldByA.has(id(d))), 'nothing locked to a is handed to b');
  const [released, rejected, ...rest] = gotA;
  a.release(released, 0, 'later');
  a.reject(rejected, 'cannot parse');
  for (const d of rest) a.accept(d);
  const results = await a.flush();
  assert.deepEqual(results.map((r) => r.outcome), ['available', 'dead_lettered', 'done', 'done']);
  b.accept(rest[0]);
  const refused = await b.flush();
  assert.equal(refused[0].outcome, '');
  assert.match(refused[0].error, /done already/);
  const again = await b.poll();
  assert.deepEqual(again.map(id), [id(released)]);
  assert.equal(again[0].deliveries, 2);
  for (const d of gotB.concat(again)) b.accept(d);
  assert.ok((await b.flush()).every((r) => r.outcome === 'done'));
  const desc = await unary(client.stub, 'DescribeSharedGroup', { group: 'sg', topic: 'st' }, 5000);
  assert.equal(desc.partitions.reduce((n, p) => n + Number(p.position), 0), 10);
  assert.ok(desc.partitions.every((p) => p.inFlight === 0));
  const dead = (await unary(client.stub, 'Fetch', { topic: 'sg.dlq', partition: 0, offset: '0' }, 5000)).records;
  assert.equal(dead.length, 1);
  const h = dead[0].headers;
  assert.equal(h['obelisk-origin-topic'].toString(), 'st');
  assert.equal(h['obelisk-origin-offset'].toString(), String(rejected.record.offset));
  assert.equal(h['obelisk-reason'].toString(), 'cannot parse');
});

test('shared streams get records pushed and settle on the stream', async () => {
  const { client } = broker;
  await client.createTopic('ss', { partitions: 2 });
  const records = [];
  for (let i = 0; i < 10; i += 1) records.push({ value: `v${i}`, partition: i % 2 });
  await client.produce('ss', records);
  const a = client.sharedStream('ss', 'ssg', { memberId: 'a', maxInFlight: 4 });
  let gotA = [];
  while (gotA.length < 4) gotA = gotA.concat(await a.deliveries(5000));
  assert.equal(gotA.length, 4);
  assert.ok(gotA.every((d) => d.deliveries === 1));
  // a's credit is spent: the rest goes to b (whose credit is spent then too).
  const b = client.sharedStream('ss', 'ssg', { memberId: 'b', maxInFlight: 6 });
  let gotB = [];
  while (gotB.length < 6) gotB = gotB.concat(await b.deliveries(5000));
  const heldByA = new Set(gotA.map(id));
  assert.ok(gotB.every((d) => !heldByA.has(id(d))), 'nothing locked to a is pushed to b');
  const [released, rejected, accepted, kept] = gotA;
  a.release(released, 0, 'later');
  a.reject(rejected, 'cannot parse');
  a.accept(accepted);
  assert.deepEqual((await a.settle()).map((r) => r.outcome), ['available', 'dead_lettered', 'done']);
  // Credit came back: the released record is pushed again, counted.
  const again = await a.deliveries(5000);
  assert.deepEqual(again.map(id), [id(released)]);
  assert.equal(again[0].deliveries, 2);
  // a crashes: its locks stay, nobody else gets those records.
  a.abort();
  for (const d of gotB) b.accept(d);
  assert.ok((await b.settle()).every((r) => r.outcome === 'done'));
  assert.deepEqual(await b.deliveries(300), []);
  assert.deepEqual(await b.close(), []);
  // Still a's: a new stream of the same member settles them.
  const a2 = client.sharedStream('ss', 'ssg', { memberId: 'a', maxInFlight: 4 });
  a2.accept(kept);
  a2.accept(again[0]);
  assert.deepEqual((await a2.settle()).map((r) => r.outcome), ['done', 'done']);
  await a2.close();
  const desc = await unary(client.stub, 'DescribeSharedGroup', { group: 'ssg', topic: 'ss' }, 5000);
  assert.equal(desc.partitions.reduce((n, p) => n + Number(p.position), 0), 10);
  // Bad input: a clear status.
  const bad = client.sharedStream('ss', 'ssg', { memberId: '' });
  await assert.rejects(bad.deliveries(5000), (e) => e.code === 3 && /member id/.test(e.message));
});

'use strict';
// The Node client against a real broker: produce, consume, commit, restart, subscribe, errors, health.

const { test, beforeEach, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { status } = require('@grpc/grpc-js');
const { Client, ObeliskError, HEALTH_SERVICE } = require('../src');
const { startBroker, pollUntil, fnv1a32 } = require('../test-support/fixtures');

let broker;
beforeEach(async () => { broker = await startBroker(); });
afterEach(async () => { await broker.close(); });

test('produce a batch and consume it back', async () => {
  const { client } = broker;
  const producer = client.producer({ batchRecords: 50, lingerMs: 5 });
  const acks = await Promise.all(Array.from({ length: 200 }, (_, i) =>
    producer.send('orders', { key: `user-${i % 7}`, value: `value-${i}`, headers: { n: String(i) } })));
  await producer.close();

  acks.forEach((a, i) => assert.equal(a.partition, fnv1a32(Buffer.from(`user-${i % 7}`)) % 4, 'FNV-1a placement'));
  const byPartition = new Map();
  for (const a of acks) byPartition.set(a.partition, [...(byPartition.get(a.partition) ?? []), a.offset]);
  for (const offsets of byPartition.values()) {
    assert.deepEqual(offsets, offsets.map((_, i) => BigInt(i)), 'dense offsets, in send order');
  }

  const records = await pollUntil(client.consumer('orders', 'g1'), 200);
  assert.equal(records.length, 200);
  const sent = new Map(acks.map((a, i) => [`${a.partition}/${a.offset}`, i]));
  for (const r of records) {
    const i = sent.get(`${r.partition}/${r.offset}`);
    assert.equal(r.key.toString(), `user-${i % 7}`);
    assert.equal(r.value.toString(), `value-${i}`);
    assert.deepEqual(r.headers, { n: Buffer.from(String(i)) });
    assert.ok(r.timestampNs > 0n, 'the broker stamps records sent without a timestamp');
  }
});

test('gzip transport compression', async () => {
  const client = new Client(broker.server.addr, { timeoutMs: 10_000, compression: 'gzip' });
  const producer = client.producer();
  const acks = await Promise.all(Array.from({ length: 50 }, (_, i) =>
    producer.send('gz', { value: 'x'.repeat(2000) + i, partition: 0 })));
  await producer.close();
  assert.deepEqual(acks.map((a) => a.offset), Array.from({ length: 50 }, (_, i) => BigInt(i)));
  const records = await pollUntil(client.consumer('gz', 'g'), 50);
  assert.deepEqual(records.map((r) => r.value.toString()), Array.from({ length: 50 }, (_, i) => 'x'.repeat(2000) + i));
  client.close();
  assert.throws(() => new Client(broker.server.addr, { compression: 'snappy' }), TypeError);
});

test('key, binary value, headers and a timestamp beyond 2^53 round-trip exactly', async () => {
  const { client } = broker;
  const producer = client.producer();
  const ts = 1_700_000_000_123_456_789n;
  const ack = await producer.send('t', {
    key: Buffer.from([1, 0x6b]), value: Buffer.from([0, 0xff, 0x62]), headers: { h: Buffer.from([0, 1]) },
    timestampNs: ts, partition: 2,
  });
  await producer.close();
  assert.deepEqual(ack, { partition: 2, offset: 0n });
  const [r] = await pollUntil(client.consumer('t', 'g'), 1);
  assert.deepEqual(r, {
    partition: 2, offset: 0n, timestampNs: ts, key: Buffer.from([1, 0x6b]), value: Buffer.from([0, 0xff, 0x62]),
    headers: { h: Buffer.from([0, 1]) },
  });
});

test('linger holds a partial batch until flush', async () => {
  const producer = broker.client.producer({ batchRecords: 10, lingerMs: 60_000 });
  const full = await Promise.all(Array.from({ length: 10 }, (_, i) => producer.send('lingering', { value: `${i}` })));
  assert.equal(full.length, 10, 'a full batch is sent without waiting for linger');
  let settled = 0;
  const partial = Array.from({ length: 3 }, (_, i) => producer.send('lingering', { value: `p${i}` }).then(() => settled++));
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(settled, 0, 'a partial batch waits for linger');
  await producer.flush();
  await Promise.all(partial);
  assert.equal(settled, 3);
  await producer.close();
});

test('poll, commit, and resume from the committed offset after a restart', async () => {
  let client = broker.client;
  await client.createTopic('jobs', { partitions: 1 });
  await client.produce('jobs', Array.from({ length: 20 }, (_, i) => ({ value: `${i}` })));
  const consumer = client.consumer('jobs', 'workers');
  const first = await consumer.poll({ maxRecords: 8 });
  assert.deepEqual(first.map((r) => r.offset), [0n, 1n, 2n, 3n, 4n, 5n, 6n, 7n]);
  assert.deepEqual(await consumer.poll({ maxRecords: 8 }), first, 'no commit: the same records again');
  assert.deepEqual(await consumer.commit(first), { 0: 8n }, 'commit stores the NEXT offset to read');

  client.close();
  assert.equal(await broker.server.stop(), 0);
  await broker.server.start();
  client = broker.client = new Client(broker.server.addr);
  const resumed = await client.consumer('jobs', 'workers').poll({ maxRecords: 100 });
  assert.deepEqual(resumed.map((r) => Number(r.offset)), Array.from({ length: 12 }, (_, i) => 8 + i));
  assert.deepEqual(resumed.map((r) => r.value.toString()), Array.from({ length: 12 }, (_, i) => `${8 + i}`));
});

test('subscribe receives new records as they are acknowledged', async () => {
  const { client } = broker;
  await client.createTopic('live', { partitions: 2 });
  const consumer = client.consumer('live', 'watchers');
  const producer = client.producer();
  const sub = consumer.subscribe({ timeoutMs: 10_000 });
  const it = sub[Symbol.asyncIterator]();
  for (const round of [0, 1]) {
    const acks = await Promise.all([0, 1, 2, 3, 4].map((i) => producer.send('live', { value: `r${round}-${i}` })));
    const got = [];
    for (let i = 0; i < 5; i++) got.push((await it.next()).value);
    const key = (x) => `${x.partition}/${x.offset}`;
    assert.deepEqual(got.map(key).sort(), acks.map(key).sort());
    assert.deepEqual(got.map((r) => r.value.toString()).sort(), [0, 1, 2, 3, 4].map((i) => `r${round}-${i}`));
  }
  sub.cancel();
  assert.deepEqual(await it.next(), { done: true, value: undefined }, 'a cancelled subscription stops');
  await producer.close();
  assert.notEqual((await consumer.poll({ maxWaitMs: 0 })).length, 0, 'subscribe does not commit');
});

test('for await over a consumer, from a timestamp', async () => {
  const { client } = broker;
  await client.produce('ts', [100n, 200n, 300n].map((t) => ({ value: `${t}`, timestampNs: t, partition: 0 })));
  const seen = [];
  for await (const r of client.consumer('ts', 'g').subscribe({ start: { timestampNs: 200n }, timeoutMs: 10_000 })) {
    seen.push(r.timestampNs);
    if (seen.length === 2) break;
  }
  assert.deepEqual(seen, [200n, 300n]);
});

test('a bad topic name rejects with ObeliskError INVALID_ARGUMENT and the server message', async () => {
  const { client } = broker;
  await assert.rejects(client.consumer('bad/topic', 'g').poll({ maxWaitMs: 0 }), (err) => {
    assert.ok(err instanceof ObeliskError);
    assert.equal(err.code, status.INVALID_ARGUMENT);
    assert.equal(err.codeName, 'INVALID_ARGUMENT');
    assert.match(err.message, /^invalid topic name "bad\/topic"/);
    return true;
  });
  const producer = client.producer();
  await assert.rejects(producer.send('bad/topic', { value: 'x' }), (err) => {
    assert.ok(err instanceof ObeliskError);
    assert.equal(err.code, status.INVALID_ARGUMENT);
    assert.match(err.message, /bad\/topic/);
    return true;
  });
  const ok = await producer.send('good-topic', { value: 'x' });
  assert.equal(ok.offset, 0n, 'the stream goes on after a failed batch');
  await producer.close();
});

test('commit beyond the log end is OUT_OF_RANGE', async () => {
  const { client } = broker;
  await client.produce('small', [{ value: 'x', partition: 0 }]);
  await assert.rejects(client.consumer('small', 'g').commitOffsets({ 0: 5n }), { code: status.OUT_OF_RANGE });
});

test('send after close rejects', async () => {
  const producer = broker.client.producer();
  await producer.close();
  await assert.rejects(producer.send('t', { value: 'late' }), { code: status.CANCELLED });
});

test('a broken stream fails the pending acks', async () => {
  const producer = broker.client.producer({ lingerMs: 60_000, batchRecords: 1000, idempotent: false });
  const pending = producer.send('t', { value: 'never acknowledged' });
  assert.equal(await broker.server.stop(), 0);
  await producer.flush();
  await assert.rejects(pending, { code: status.UNAVAILABLE });
  await assert.rejects(producer.send('t', { value: 'after the break' }), ObeliskError);
  await broker.server.start(); // for afterEach's clean stop
});

test('health check answers SERVING for obelisk.v1.Broker', async () => {
  assert.equal(await broker.client.checkHealth(HEALTH_SERVICE), 'SERVING');
});

test('the quickstart example runs', () => {
  const res = spawnSync(process.execPath, [path.join(__dirname, '..', 'examples', 'quickstart.js'), broker.server.addr],
    { encoding: 'utf8', timeout: 30_000 });
  assert.equal(res.status, 0, res.stdout + res.stderr);
  assert.match(res.stdout, /committed next offsets/);
  assert.match(res.stdout, /INVALID_ARGUMENT: invalid topic name "bad\/topic"/);
});

'use strict';
// The idempotent producer (issue 16) against a real broker: retries are stored once and answered
// with the original offsets, a cut connection is retried, gaps are refused, and it is the default.

const { test, beforeEach, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const { setTimeout: delay } = require('node:timers/promises');
const { status } = require('@grpc/grpc-js');
const { Client, ObeliskError } = require('../src');
const { fnv1a32 } = require('../src/producer');
const { startBroker } = require('../test-support/fixtures');
const { CutProxy } = require('../test-support/cut-proxy');

let broker;
beforeEach(async () => { broker = await startBroker(); });
afterEach(async () => { await broker.close(); });

const records = (values, partition = 0) => values.map((v) => ({ value: Buffer.from(v), partition }));

/** The raw unary Produce: resolves with [partition, offset] pairs, rejects with the grpc-js error (trailers in `.metadata`). */
function rawProduce(client, req) {
  return new Promise((resolve, reject) => {
    client.stub.Produce(req, { deadline: Date.now() + 10_000 }, (err, resp) => {
      if (err) reject(err);
      else resolve(resp.acks.map((a) => [a.partition, Number(a.offset)]));
    });
  });
}

const initProducer = (client, req = {}) => new Promise((resolve, reject) => {
  client.stub.InitProducer(req, (err, resp) => (err ? reject(err) : resolve(resp)));
});

/** Records in the topic (the sum over its partitions of end - start). */
async function stored(client, topic) {
  const t = await client.describeTopic(topic);
  return t.partitions.reduce((n, p) => n + Number(p.logEndOffset) - Number(p.logStartOffset), 0);
}

async function waitStored(client, topic, count, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await stored(client, topic) >= count) return;
    await delay(50);
  }
  throw new Error(`${await stored(client, topic)} of ${count} records stored within ${timeoutMs} ms`);
}

/** Every stored record, read by a new group from the start. */
async function readAll(client, topic) {
  const consumer = client.consumer(topic, `reader-${Date.now()}`);
  const want = await stored(client, topic);
  const out = [];
  const deadline = Date.now() + 20_000;
  while (out.length < want && Date.now() < deadline) {
    const got = await consumer.poll({ maxRecords: 10_000, maxWaitMs: 200 });
    out.push(...got);
    if (got.length) await consumer.commit(got);
  }
  return out;
}

test('a retried request is stored once and answered with the same offsets', async () => {
  const { client } = broker;
  await client.createTopic('retry', { partitions: 2 });
  const grant = await initProducer(client);
  const idempotence = { producerId: grant.producerId, producerEpoch: grant.producerEpoch, sequences: { 1: 0 } };
  const req = { topic: 'retry', records: records(['a', 'b', 'c'], 1), idempotence };
  const first = await rawProduce(client, req);
  const again = await rawProduce(client, req);
  assert.deepEqual(first, [[1, 0], [1, 1], [1, 2]]);
  assert.deepEqual(again, first);
  assert.equal(await stored(client, 'retry'), 3);
  assert.deepEqual((await readAll(client, 'retry')).map((r) => r.value.toString()), ['a', 'b', 'c']);
});

test('a gap is refused with FAILED_PRECONDITION and the expected sequence; an older epoch is fenced', async () => {
  const { client } = broker;
  await client.createTopic('gap', { partitions: 1 });
  const grant = await initProducer(client);
  const produce = (seq, values, epoch = grant.producerEpoch) => rawProduce(client, {
    topic: 'gap', records: records(values), idempotence: { producerId: grant.producerId, producerEpoch: epoch, sequences: { 0: seq } },
  });
  await produce(0, ['a', 'b']);
  await assert.rejects(produce(5, ['x']), (err) => {
    assert.equal(err.code, status.FAILED_PRECONDITION);
    assert.deepEqual(err.metadata.get('obelisk-expected-sequence'), ['2']);
    return true;
  });
  assert.equal(await stored(client, 'gap'), 2);
  const newer = await initProducer(client, { producerId: grant.producerId });
  assert.ok(newer.producerEpoch > grant.producerEpoch);
  await assert.rejects(produce(2, ['c']), { code: status.FAILED_PRECONDITION });
});

test('the producer is idempotent by default', async () => {
  const { client } = broker;
  await client.createTopic('default', { partitions: 3 });
  const producer = client.producer({ batchRecords: 10, lingerMs: 60_000 });
  assert.equal(producer.idempotent, true);
  const acks = await Promise.all(Array.from({ length: 10 }, (_, i) => producer.send('default', { value: `v${i}`, partition: 0 })));
  assert.notEqual(producer.producerId, null);
  const { producerId, producerEpoch } = producer;
  await producer.close();
  assert.deepEqual(acks, Array.from({ length: 10 }, (_, i) => ({ partition: 0, offset: BigInt(i) })));
  // Its batch carried (id, epoch, sequence 0 in partition 0): sent again by hand, it is a retry.
  const retry = await rawProduce(client, {
    topic: 'default', records: records(Array.from({ length: 10 }, (_, i) => `v${i}`)),
    idempotence: { producerId, producerEpoch, sequences: { 0: 0 } },
  });
  assert.deepEqual(retry, Array.from({ length: 10 }, (_, i) => [0, i]));
  assert.equal(await stored(client, 'default'), 10);

  const plain = client.producer({ idempotent: false });
  assert.equal((await plain.send('default', { value: 'x', partition: 1 })).offset, 0n);
  assert.equal(plain.producerId, null);
  await plain.close();
});

test('keys are routed as the broker routes them; empty keys round-robin', async () => {
  const { client } = broker;
  await client.createTopic('routed', { partitions: 4 });
  const producer = client.producer({ batchRecords: 50, lingerMs: 5 });
  const keyed = Array.from({ length: 100 }, (_, i) => producer.send('routed', { key: `user-${i % 7}`, value: `v${i}` }));
  const unkeyed = Array.from({ length: 8 }, () => producer.send('routed', { value: 'rr' }));
  const acks = await Promise.all(keyed);
  const rr = new Set((await Promise.all(unkeyed)).map((a) => a.partition));
  await producer.close();
  acks.forEach((a, i) => assert.equal(a.partition, fnv1a32(Buffer.from(`user-${i % 7}`)) % 4));
  assert.deepEqual([...rr].sort(), [0, 1, 2, 3]);
});

test('a new topic is created by a plain batch, the next ones are idempotent', async () => {
  const { client } = broker;
  const producer = client.producer({ batchRecords: 5, lingerMs: 60_000 });
  const first = await Promise.all(Array.from({ length: 5 }, (_, i) => producer.send('fresh', { value: `a${i}`, partition: 0 })));
  const later = await Promise.all(Array.from({ length: 5 }, (_, i) => producer.send('fresh', { value: `b${i}`, partition: 0 })));
  const { producerId, producerEpoch } = producer;
  await producer.close();
  assert.deepEqual(first.map((a) => a.offset), [0n, 1n, 2n, 3n, 4n]);
  assert.deepEqual(later.map((a) => a.offset), [5n, 6n, 7n, 8n, 9n]);
  const retry = await rawProduce(client, {
    topic: 'fresh', records: records(Array.from({ length: 5 }, (_, i) => `b${i}`)),
    idempotence: { producerId, producerEpoch, sequences: { 0: 0 } },
  });
  assert.deepEqual(retry.map(([, o]) => o), [5, 6, 7, 8, 9]);
  assert.equal(await stored(client, 'fresh'), 10);
});

/**
 * Sends 1 record (acked) then 50 whose ack the proxy swallows; once the broker stored them, cuts
 * the connection. Resolves with the 50 settled outcomes and the producer.
 */
async function produceThroughACut(idempotent) {
  const { client, server } = broker;
  await client.createTopic('cut', { partitions: 2 });
  const proxy = await new CutProxy(server.addr).start();
  const via = new Client(proxy.addr, { timeoutMs: 10_000 });
  try {
    const producer = via.producer({ batchRecords: 100, lingerMs: 60_000, idempotent });
    const warm = producer.send('cut', { key: 'k', value: 'warm' });
    await producer.flush();
    await warm; // the topic is described and the stream is up
    proxy.hold();
    const sends = Array.from({ length: 50 }, (_, i) => producer.send('cut', { key: `k${i}`, value: `v${i}` }));
    const settled = Promise.allSettled(sends);
    producer.flush();
    await waitStored(client, 'cut', 51);
    let acked = 0;
    sends.forEach((p) => p.then(() => { acked += 1; }, () => {}));
    await delay(50);
    assert.equal(acked, 0, 'the acks were swallowed');
    proxy.cut();
    const outcomes = await settled;
    if (idempotent) await producer.close();
    else await assert.rejects(producer.send('cut', { value: 'after' }), ObeliskError);
    return outcomes;
  } finally {
    via.close();
    await proxy.close();
  }
}

test('a cut connection is retried and the records are stored once, with their original offsets', async () => {
  const outcomes = await produceThroughACut(true);
  const acks = outcomes.map((o) => {
    assert.equal(o.status, 'fulfilled', o.reason && String(o.reason));
    return o.value;
  });
  assert.equal(new Set(acks.map((a) => `${a.partition}/${a.offset}`)).size, 50);
  assert.equal(await stored(broker.client, 'cut'), 51, 'the resent batch was not written again');
  const back = await readAll(broker.client, 'cut');
  assert.deepEqual(back.map((r) => r.value.toString()).sort(), ['warm', ...Array.from({ length: 50 }, (_, i) => `v${i}`)].sort());
  const where = new Map(back.map((r) => [r.value.toString(), `${r.partition}/${r.offset}`]));
  acks.forEach((a, i) => assert.equal(where.get(`v${i}`), `${a.partition}/${a.offset}`, 'the original offsets'));
});

test('a cut connection fails a producer that is not idempotent (no retry)', async () => {
  const outcomes = await produceThroughACut(false);
  for (const o of outcomes) {
    assert.equal(o.status, 'rejected');
    assert.equal(o.reason.code, status.UNAVAILABLE);
  }
  assert.equal(await stored(broker.client, 'cut'), 51, 'stored once, not retried');
});

test('a batch stored before a kill -9 of the broker is retried against the restarted broker and stored once', async () => {
  const { client, server } = broker;
  await client.createTopic('crash', { partitions: 2 });
  const proxy = await new CutProxy(server.addr).start();
  const fast = { 'grpc.initial_reconnect_backoff_ms': 100, 'grpc.max_reconnect_backoff_ms': 500 };
  const via = new Client(proxy.addr, { timeoutMs: 10_000, channelOptions: fast });
  let acks;
  try {
    const producer = via.producer({ batchRecords: 100, lingerMs: 60_000, maxRetries: 40 });
    const warm = producer.send('crash', { key: 'k', value: 'warm' });
    await producer.flush();
    await warm;
    proxy.hold();
    const sends = Array.from({ length: 50 }, (_, i) => producer.send('crash', { key: `k${i}`, value: `v${i}` }));
    producer.flush();
    await waitStored(client, 'crash', 51);
    await server.kill9();
    await server.start({ addr: server.addr });
    acks = await Promise.all(sends);
    await producer.close();
  } finally {
    via.close();
    await proxy.close();
  }
  assert.equal(await stored(client, 'crash'), 51, 'stored once across the crash');
  const where = new Map((await readAll(client, 'crash')).map((r) => [r.value.toString(), `${r.partition}/${r.offset}`]));
  acks.forEach((a, i) => assert.equal(where.get(`v${i}`), `${a.partition}/${a.offset}`, 'the original offsets'));
});

test('missing acks time out, are retried (stored once), then fail with DEADLINE_EXCEEDED', async () => {
  const { client, server } = broker;
  await client.createTopic('silent', { partitions: 1 });
  const proxy = await new CutProxy(server.addr).start();
  const via = new Client(proxy.addr, { timeoutMs: 10_000 });
  try {
    const producer = via.producer({ batchRecords: 100, lingerMs: 60_000, requestTimeoutMs: 500, maxRetries: 2 });
    const warm = producer.send('silent', { value: 'warm' });
    await producer.flush();
    await warm;
    proxy.hold();
    const outcomes = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => producer.send('silent', { value: `v${i}`, partition: 0 })).concat(producer.flush()));
    for (const o of outcomes.slice(0, 10)) {
      assert.equal(o.status, 'rejected');
      assert.equal(o.reason.code, status.DEADLINE_EXCEEDED);
    }
    await producer.close();
  } finally {
    via.close();
    await proxy.close();
  }
  assert.equal(await stored(client, 'silent'), 11, 'stored once, however often it was resent');
});

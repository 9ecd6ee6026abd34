'use strict';
// replication (issue 17): the Node client against a real 3-node cluster, a follower's address
// given first: unary produce and the batching producer follow the leader (also when it is
// killed), and a commit through the client is returned by every node.

const { test, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { setTimeout: delay } = require('node:timers/promises');
const { Client } = require('../src');
const { ObeliskServer, freePort } = require('../test-support/server');

let nodes = [];
let dir;
afterEach(async () => {
  for (const n of nodes) await n.kill9();
  nodes = [];
  fs.rmSync(dir, { recursive: true, force: true });
});

async function startCluster() {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'obelisk-ts-cluster-'));
  const raft = [await freePort(), await freePort(), await freePort()];
  const peers = raft.map((p, i) => `${i + 1}=127.0.0.1:${p}`).join(',');
  nodes = [1, 2, 3].map((id) => new ObeliskServer(path.join(dir, `data${id}`), path.join(dir, `node${id}.log`),
    { extraArgs: ['--node-id', String(id), '--peers', peers, '--default-partitions', '3'] }));
  for (const n of nodes) await n.start();
  return nodes;
}

/** The node the cluster elected (asked through Metadata). */
async function leaderOf(all, patienceMs = 30_000) {
  const deadline = Date.now() + patienceMs;
  while (Date.now() < deadline) {
    for (const n of all) {
      const c = new Client(n.addr, { timeoutMs: 2000 });
      try {
        const m = await c.call('Metadata', {}, 0);
        if (m.leader !== undefined && m.leader !== null && String(m.leader) === String(m.nodeId)) return n;
      } catch { /* not answering: try the next */ } finally { c.close(); }
    }
    await delay(100);
  }
  throw new Error(`no leader elected:\n${all.map((n) => n.log().slice(-2000)).join('\n')}`);
}

test('the client follows the leader from a follower and through a kill', async () => {
  const all = await startCluster();
  const leader = await leaderOf(all);
  const followers = all.filter((n) => n !== leader);
  const client = new Client([followers[0].addr, followers[1].addr, leader.addr], { timeoutMs: 30_000 });
  try {
    await client.createTopic('t', { partitions: 3 }); // a follower forwards it
    const acks = await client.produce('t', [{ value: 'unary-0', partition: 0 }]);
    assert.equal(acks.length, 1);
    assert.equal(client.addr, leader.addr, 'the produce was redirected to the leader');
    const producer = client.producer();
    const send = (tag) => Promise.all(Array.from({ length: 30 }, (_, i) =>
      producer.send('t', { value: `${tag}-${i}`, partition: i % 3 })));
    const before = await send('before');
    await leader.kill9();
    const after = await send('after');
    await producer.close();
    assert.notEqual(client.addr, leader.addr, 'the producer moved to the new leader');
    for (const n of followers) {
      const r = new Client(n.addr, { timeoutMs: 10_000 });
      try {
        const stored = new Map();
        for (let p = 0; p < 3; p++) {
          const resp = await r.call('Fetch', { topic: 't', partition: p, offset: '0', maxRecords: 10_000 });
          for (const rec of resp.records) {
            const v = rec.value.toString();
            assert.ok(!stored.has(v), `${v} stored twice on ${n.addr}`);
            stored.set(v, `${p}/${rec.offset}`);
          }
        }
        [...before.map((a, i) => [`before-${i}`, a]), ...after.map((a, i) => [`after-${i}`, a])]
          .forEach(([v, a]) => assert.equal(stored.get(v), `${a.partition}/${a.offset}`, `${v} on ${n.addr}`));
      } finally { r.close(); }
    }
  } finally { client.close(); }
});

test('a commit through the client is on every node', async () => {
  const all = await startCluster();
  const leader = await leaderOf(all);
  const follower = all.find((n) => n !== leader);
  const client = new Client(`${follower.addr},${leader.addr}`, { timeoutMs: 30_000 });
  try {
    await client.createTopic('t', { partitions: 3 });
    await client.produce('t', Array.from({ length: 15 }, (_, i) => ({ value: `x${i}`, partition: i % 3 })));
    await client.consumer('t', 'g').commitOffsets({ 0: 5, 1: 3, 2: 1 });
  } finally { client.close(); }
  for (const n of all) {
    const r = new Client(n.addr, { timeoutMs: 10_000 });
    const deadline = Date.now() + 30_000;
    try {
      for (;;) {
        let got;
        try {
          const g = await r.describeGroup('g');
          got = Object.fromEntries(g.partitions.filter((p) => p.topic === 't').map((p) => [p.partition, Number(p.committedOffset)]));
        } catch (e) { got = String(e); } // not applied on this node yet
        if (JSON.stringify(got) === JSON.stringify({ 0: 5, 1: 3, 2: 1 })) break;
        assert.ok(Date.now() < deadline, `${n.addr}: ${JSON.stringify(got)}`);
        await delay(100);
      }
    } finally { r.close(); }
  }
});

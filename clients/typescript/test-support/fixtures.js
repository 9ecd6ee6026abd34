'use strict';
/** Per-test broker: a fresh temp data dir, a started server, a connected client. */

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const assert = require('node:assert/strict');
const { Client } = require('../src');
const { ObeliskServer } = require('./server');

/** Starts a broker over a new temp dir; `close()` stops it (asserting a clean exit) and removes the dir. */
async function startBroker() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'obelisk-ts-'));
  const server = await new ObeliskServer(path.join(dir, 'data'), path.join(dir, 'server.log')).start();
  const client = new Client(server.addr, { timeoutMs: 10_000 });
  return {
    dir,
    server,
    client,
    async close() {
      client.close();
      const code = await server.stop();
      assert.equal(code, 0, `obelisk exited with ${code}; log:\n${server.log()}`);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Polls (without committing) until `count` records come back in one poll, or fails after `timeoutMs`. */
async function pollUntil(consumer, count, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  let records = [];
  while (Date.now() < deadline) {
    records = await consumer.poll({ maxRecords: 10_000, maxWaitMs: 200 });
    if (records.length >= count) return records;
  }
  throw new Error(`got ${records.length} of ${count} records within ${timeoutMs} ms`);
}

/** The broker's key hash (FNV-1a, 32 bit). */
function fnv1a32(buf) {
  let h = 0x811c9dc5;
  for (const b of buf) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h;
}

module.exports = { startBroker, pollUntil, fnv1a32 };

'use strict';
/**
 * Cross-language check, consumer side: reads the records that clients/python/tests/cross_produce.py
 * produced and compares them with the JSON it wrote (key, value, headers, timestamp, placement).
 */

const fs = require('node:fs');
const { pollUntil } = require('./fixtures');

/** Reads `expectedPath`, consumes its topic with a fresh group; resolves with a list of mismatches. */
async function consumeAndCompare(client, expectedPath, timeoutMs = 10_000) {
  const expected = JSON.parse(fs.readFileSync(expectedPath, 'utf8'));
  const consumer = client.consumer(expected.topic, `cross-ts-${process.pid}-${Date.now()}`);
  const records = await pollUntil(consumer, expected.records.length, timeoutMs);
  const byPlace = new Map(records.map((r) => [`${r.partition}/${r.offset}`, r]));
  const problems = [];
  if (records.length !== expected.records.length) {
    problems.push(`consumed ${records.length} records, expected ${expected.records.length}`);
  }
  for (const e of expected.records) {
    const place = `${e.partition}/${e.offset}`;
    const r = byPlace.get(place);
    if (!r) {
      problems.push(`${place}: missing`);
      continue;
    }
    const b64 = (buf) => buf.toString('base64');
    if (r.timestampNs !== BigInt(e.timestamp_ns)) problems.push(`${place}: timestamp ${r.timestampNs} != ${e.timestamp_ns}`);
    if (b64(r.key) !== e.key) problems.push(`${place}: key ${b64(r.key)} != ${e.key}`);
    if (b64(r.value) !== e.value) problems.push(`${place}: value differs (${r.value.length} bytes)`);
    const headers = Object.fromEntries(Object.entries(r.headers).map(([k, v]) => [k, b64(v)]));
    if (JSON.stringify(sortKeys(headers)) !== JSON.stringify(sortKeys(e.headers))) {
      problems.push(`${place}: headers ${JSON.stringify(headers)} != ${JSON.stringify(e.headers)}`);
    }
  }
  return { count: records.length, problems };
}

function sortKeys(o) {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

module.exports = { consumeAndCompare };

'use strict';
/** @module records — conversions between the wire messages and the client's plain objects. */

/** `string` is encoded as UTF-8; `undefined`/`null` is empty. */
function toBuffer(v) {
  if (v === undefined || v === null) return Buffer.alloc(0);
  if (typeof v === 'string') return Buffer.from(v, 'utf8');
  return Buffer.from(v);
}

/** A ProducerRecord message from `{key, value, headers, timestampNs, partition}`. */
function toProducerRecord(r) {
  const msg = {
    key: toBuffer(r.key),
    value: toBuffer(r.value),
    headers: Object.fromEntries(Object.entries(r.headers ?? {}).map(([k, v]) => [k, toBuffer(v)])),
  };
  // int64 as a decimal string: protobufjs parses it exactly (a JS number would lose digits).
  if (r.timestampNs !== undefined && r.timestampNs !== null) msg.timestampNs = BigInt(r.timestampNs).toString();
  if (r.partition !== undefined && r.partition !== null) msg.partition = r.partition;
  return msg;
}

/** A stored record: 64-bit numbers as `bigint`, bytes as `Buffer`. */
function fromRecord(m) {
  return {
    partition: m.partition,
    offset: BigInt(m.offset),
    timestampNs: BigInt(m.timestampNs),
    key: m.key,
    value: m.value,
    headers: { ...m.headers },
  };
}

/** A Position message from 'earliest' | 'latest' | {offset} | {timestampNs} (or undefined). */
function toPosition(start) {
  if (start === undefined || start === null) return null;
  if (start === 'earliest') return { earliest: true };
  if (start === 'latest') return { latest: true };
  if (typeof start === 'object' && start.offset !== undefined) return { offset: BigInt(start.offset).toString() };
  if (typeof start === 'object' && start.timestampNs !== undefined) {
    return { timestampNs: BigInt(start.timestampNs).toString() };
  }
  throw new TypeError(`not a position: ${String(start)} (use 'earliest', 'latest', {offset} or {timestampNs})`);
}

module.exports = { toBuffer, toProducerRecord, fromRecord, toPosition };

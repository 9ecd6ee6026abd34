'use strict';
/** @module consumer — poll (or subscribe to) a topic in a group, and commit what was processed. */

const { status } = require('@grpc/grpc-js');
const { unary } = require('./client');
const { ObeliskError } = require('./errors');
const { fromRecord, toPosition } = require('./records');

/**
 * Reads one topic as one consumer group. Delivery is at-least-once: `poll` does not move the
 * group's committed offsets, so polling again without `commit` returns the same records.
 * Commit after processing. Iterating the consumer (`for await`) subscribes from the group's position.
 */
class Consumer {
  /**
   * @param {import('./client').Client} client
   * @param {string} topic
   * @param {string} group
   * @param {{maxRecords?: number, maxWaitMs?: number, startIfNew?: 'earliest'|'latest'}} [config]
   */
  constructor(client, topic, group, { maxRecords = 500, maxWaitMs = 1000, startIfNew = 'earliest' } = {}) {
    if (startIfNew !== 'earliest' && startIfNew !== 'latest') throw new TypeError("startIfNew must be 'earliest' or 'latest'");
    this._client = client;
    this.topic = topic;
    this.group = group;
    this.maxRecords = maxRecords;
    this.maxWaitMs = maxWaitMs;
    this._startIfNew = startIfNew === 'latest' ? 'START_POSITION_LATEST' : 'START_POSITION_EARLIEST';
  }

  /**
   * Records from the group's committed offsets, ordered by offset within each partition; waits up
   * to `maxWaitMs` when none are available and resolves with `[]` if none came.
   */
  async poll({ maxRecords = this.maxRecords, maxWaitMs = this.maxWaitMs, maxBytes = 0 } = {}) {
    const req = {
      topic: this.topic, group: this.group, maxRecords, maxBytes, maxWaitMs, startIfNew: this._startIfNew,
    };
    const resp = await unary(this._client.stub, 'Poll', req, this._client.timeoutMs + maxWaitMs);
    return resp.records.map(fromRecord);
  }

  /**
   * Commits past `records`: per partition, the offset after its highest record (the next offset
   * to read). Resolves with those offsets as `{partition: bigint}`; no call when `records` is empty.
   */
  async commit(records) {
    const next = {};
    for (const r of records) {
      const o = BigInt(r.offset) + 1n;
      if (next[r.partition] === undefined || next[r.partition] < o) next[r.partition] = o;
    }
    if (Object.keys(next).length > 0) await this.commitOffsets(next);
    return next;
  }

  /** Stores `{partition: nextOffset}` for the group, durably. */
  async commitOffsets(offsets) {
    const list = Object.entries(offsets).map(([p, o]) => ({ partition: Number(p), offset: BigInt(o).toString() }));
    await this._client.call('Commit', { topic: this.topic, group: this.group, offsets: list });
  }

  /** Moves the group's committed offsets (`to` as in `subscribe`); resolves with `{partition: bigint}`. */
  async reset(to) {
    const resp = await this._client.call('Reset', { topic: this.topic, group: this.group, to: toPosition(to) });
    return Object.fromEntries(resp.offsets.map((o) => [o.partition, BigInt(o.offset)]));
  }

  /**
   * A live stream of records from the group's committed offsets, or from `start`: 'earliest',
   * 'latest', `{offset}` or `{timestampNs}`. Does not commit. `timeoutMs` bounds the whole stream
   * (iteration then throws DEADLINE_EXCEEDED).
   * @returns {Subscription}
   */
  subscribe({ start, maxRecordsPerMessage = 0, timeoutMs } = {}) {
    const req = { topic: this.topic, group: this.group, start: toPosition(start), maxRecordsPerMessage };
    const options = timeoutMs === undefined ? {} : { deadline: Date.now() + timeoutMs };
    return new Subscription(this._client.stub.Subscribe(req, options));
  }

  /** `for await (const r of consumer)`: subscribes from the group's position. */
  [Symbol.asyncIterator]() {
    return this.subscribe()[Symbol.asyncIterator]();
  }
}

/**
 * The records of a Subscribe stream, as an async iterable. Leaving a `for await` loop or calling
 * `cancel()` ends the stream; errors throw ObeliskError.
 */
class Subscription {
  constructor(call) {
    this._call = call;
    this._cancelled = false;
  }

  /** Ends the stream; a running iteration then stops. */
  cancel() {
    this._cancelled = true;
    this._call.cancel();
  }

  async* [Symbol.asyncIterator]() {
    try {
      for await (const msg of this._call) {
        for (const r of msg.records) yield fromRecord(r);
      }
    } catch (err) {
      if (this._cancelled && err.code === status.CANCELLED) return;
      throw ObeliskError.from(err);
    } finally {
      if (!this._cancelled) this.cancel();
    }
  }
}

module.exports = { Consumer, Subscription };

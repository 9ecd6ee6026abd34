'use strict';
/**
 * @module shared — a worker of a shared group (issue 14): records are handed out locked to it one
 * by one, and each is settled (accept, release, reject, extend) in batches.
 */

const crypto = require('node:crypto');
const { unary } = require('./client');
const { fromRecord } = require('./records');

/**
 * A worker of the shared group `group` on `topic`. `accept`, `release`, `reject` and `extend`
 * queue a settlement; `flush` sends them as one Settle (and `poll` flushes before it takes more).
 * When `flush` resolves, every outcome it reports is durable on the broker.
 */
class SharedConsumer {
  /**
   * @param {import('./client').Client} client
   * @param {string} topic
   * @param {string} group
   * @param {{memberId?: string, maxRecords?: number, maxWaitMs?: number}} [config]
   */
  constructor(client, topic, group, { memberId, maxRecords = 100, maxWaitMs = 1000 } = {}) {
    this._client = client;
    this.topic = topic;
    this.group = group;
    this.memberId = memberId || `node-${crypto.randomBytes(6).toString('hex')}`;
    this.maxRecords = maxRecords;
    this.maxWaitMs = maxWaitMs;
    this._pending = [];
  }

  /** Sends the pending settlements, then takes records (waits up to `maxWaitMs`). */
  async poll({ maxRecords = this.maxRecords, maxWaitMs = this.maxWaitMs } = {}) {
    await this.flush();
    const req = {
      group: this.group, topic: this.topic, memberId: this.memberId, maxRecords, maxWaitMs,
    };
    const resp = await unary(this._client.stub, 'SharedPoll', req, this._client.timeoutMs + maxWaitMs);
    return resp.deliveries.map((d) => ({
      record: fromRecord(d.record),
      deliveries: d.deliveries,
      lockDeadlineNs: BigInt(d.lockDeadlineNs),
    }));
  }

  _push(d, kind, delayMs, reason = '') {
    const s = { partition: d.record.partition, offset: String(d.record.offset), kind, reason };
    if (delayMs !== undefined && delayMs !== null) s.delayMs = delayMs;
    this._pending.push(s);
  }

  /** Done with the record. */
  accept(d) { this._push(d, 'SETTLE_KIND_ACCEPT'); }

  /** Gives the record back, available after `delayMs` (undefined: the group's backoff). */
  release(d, delayMs, reason = '') { this._push(d, 'SETTLE_KIND_RELEASE', delayMs, reason); }

  /** Sends the record to the group's dead-letter topic. */
  reject(d, reason = '') { this._push(d, 'SETTLE_KIND_REJECT', undefined, reason); }

  /** Keeps the record locked for another ack timeout. */
  extend(d) { this._push(d, 'SETTLE_KIND_EXTEND'); }

  /**
   * Sends the pending settlements as one batch; resolves with each one's result
   * (`outcome`: 'done' | 'available' | 'extended' | 'dead_lettered', or `error` when refused).
   * On an error they stay pending.
   */
  async flush() {
    if (this._pending.length === 0) return [];
    const req = {
      group: this.group, topic: this.topic, memberId: this.memberId, settlements: this._pending,
    };
    const resp = await unary(this._client.stub, 'Settle', req, this._client.timeoutMs);
    this._pending = [];
    return resp.results.map((r) => ({
      partition: r.partition, offset: BigInt(r.offset), outcome: r.outcome, error: r.error,
    }));
  }
}

const { ObeliskError } = require('./errors');
const { status } = require('@grpc/grpc-js');

const toDelivery = (d) => ({
  record: fromRecord(d.record), deliveries: d.deliveries, lockDeadlineNs: BigInt(d.lockDeadlineNs),
});
const toResult = (r) => ({
  partition: r.partition, offset: BigInt(r.offset), outcome: r.outcome, error: r.error,
});

/**
 * A worker of the shared group `group` on one SharedConsume stream: the broker pushes records
 * while fewer than `maxInFlight` handed out on the stream are unsettled (no polling loop), and
 * answers each settle batch on the same stream. `deliveries()` resolves with the next records
 * pushed; `accept`, `release`, `reject` and `extend` queue a settlement; `settle()` sends them
 * as one batch and resolves with the results (durable then). `close()` ends the stream and
 * resolves with the records pushed but not read (still locked to the worker); `abort()` drops
 * it like a crash (its locks stay until they expire).
 */
class SharedStream {
  /**
   * @param {import('./client').Client} client
   * @param {string} topic
   * @param {string} group
   * @param {{memberId?: string, maxInFlight?: number, maxRecords?: number}} [config]
   */
  constructor(client, topic, group, { memberId, maxInFlight = 1000, maxRecords = 0 } = {}) {
    this.topic = topic;
    this.group = group;
    this.memberId = memberId ?? `node-${crypto.randomBytes(6).toString('hex')}`;
    this._events = [];
    this._waiters = [];
    this._ended = null;
    this._pending = [];
    this._nextId = 1;
    this._call = client.stub.SharedConsume();
    this._call.on('data', (msg) => {
      if (msg.kind === 'deliveries') this._event({ deliveries: msg.deliveries.deliveries.map(toDelivery) });
      else if (msg.kind === 'settled') this._event({ id: Number(msg.settled.id), results: msg.settled.results.map(toResult) });
    });
    this._call.on('error', (err) => { this._end(ObeliskError.from(err)); });
    this._call.on('end', () => { this._end(null); });
    this._call.write({
      open: { group, topic, memberId: this.memberId, maxInFlight, maxRecords },
    });
  }

  _event(e) {
    this._events.push(e);
    this._wake();
  }

  _end(err) {
    if (this._ended === null) this._ended = { err };
    this._wake();
  }

  _wake() {
    const w = this._waiters;
    this._waiters = [];
    for (const f of w) f();
  }

  /** Resolves with the next event, or null once the stream ended (rejects with its error). */
  async _next(timeoutMs) {
    for (;;) {
      if (this._events.length > 0) return this._events.shift();
      if (this._ended !== null) {
        if (this._ended.err) throw this._ended.err;
        return null;
      }
      let timer;
      const timedOut = await new Promise((resolve) => {
        this._waiters.push(() => resolve(false));
        if (timeoutMs !== undefined) timer = setTimeout(() => resolve(true), timeoutMs);
      });
      clearTimeout(timer);
      if (timedOut) return undefined;
    }
  }

  /**
   * The next records pushed (waits up to `timeoutMs`, undefined: until some come); [] when
   * none came in time or the stream ended. Settle answers read meanwhile are dropped.
   */
  async deliveries(timeoutMs) {
    const deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
    for (;;) {
      const left = deadline === undefined ? undefined : Math.max(0, deadline - Date.now());
      const e = await this._next(left);
      if (!e) return [];
      if (e.deliveries) return e.deliveries;
    }
  }

  _push(d, kind, delayMs, reason = '') {
    const s = { partition: d.record.partition, offset: String(d.record.offset), kind, reason };
    if (delayMs !== undefined && delayMs !== null) s.delayMs = delayMs;
    this._pending.push(s);
  }

  accept(d) { this._push(d, 'SETTLE_KIND_ACCEPT'); }

  release(d, delayMs, reason = '') { this._push(d, 'SETTLE_KIND_RELEASE', delayMs, reason); }

  reject(d, reason = '') { this._push(d, 'SETTLE_KIND_REJECT', undefined, reason); }

  extend(d) { this._push(d, 'SETTLE_KIND_EXTEND'); }

  /** Sends the queued settlements as one batch without waiting; returns its id (null: none). */
  flush() {
    if (this._pending.length === 0) return null;
    const id = this._nextId;
    this._nextId += 1;
    this._call.write({ settle: { id: String(id), settlements: this._pending } });
    this._pending = [];
    return id;
  }

  /** Sends the queued settlements and resolves with their results (records pushed meanwhile
   * are kept for `deliveries()`). */
  async settle() {
    const want = this.flush();
    if (want === null) return [];
    const kept = [];
    try {
      for (;;) {
        const e = await this._next();
        if (!e) throw new ObeliskError(status.UNAVAILABLE, "the stream ended before the settle's answer");
        if (e.id === want) return e.results;
        if (e.deliveries) kept.push(e);
      }
    } finally {
      this._events.unshift(...kept);
    }
  }

  /** Records unsettled on this stream at most (0 pauses the hand-out). */
  setCredit(maxInFlight) {
    this._call.write({ credit: { maxInFlight } });
  }

  /** Ends the stream; resolves with the records pushed and not read (still locked to the
   * worker: release them with a SharedConsumer of the same memberId). */
  async close() {
    this._call.end();
    const left = [];
    for (;;) {
      const e = await this._next();
      if (!e) return left;
      if (e.deliveries) left.push(...e.deliveries);
    }
  }

  /** Drops the stream like a crashed worker: nothing settled, its locks stay until they expire. */
  abort() {
    this._call.cancel();
  }
}

module.exports = { SharedConsumer, SharedStream };

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

module.exports = { SharedConsumer };

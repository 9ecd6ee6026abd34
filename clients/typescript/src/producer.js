'use strict';
/**
 * @module producer — records are batched (by count or linger) onto one ProduceStream; each
 * `send` returns a promise of the record's ack, resolved once the broker stored it durably.
 * The server answers batches in the order they were sent, so acks are matched by position.
 */

const { status } = require('@grpc/grpc-js');
const { ObeliskError } = require('./errors');
const { toProducerRecord } = require('./records');

/**
 * A batching producer over one ProduceStream. A batch holds records of one topic; records sent
 * through one producer are stored in send order per partition. Call {@link Producer#close}.
 */
class Producer {
  /**
   * @param {import('./client').Client} client
   * @param {{batchRecords?: number, lingerMs?: number, maxInFlight?: number}} [config]
   *   A batch is sent at `batchRecords` records or `lingerMs` after its first record; at most
   *   `maxInFlight` batches are unacknowledged at once (more wait, in order).
   */
  constructor(client, { batchRecords = 500, lingerMs = 2, maxInFlight = 16 } = {}) {
    this._batchRecords = Math.max(1, batchRecords);
    this._lingerMs = Math.max(0, lingerMs);
    this._maxInFlight = Math.max(1, maxInFlight);
    this._batch = null; // { topic, records: [], settlers: [] } being filled
    this._ready = []; // full batches waiting for an in-flight slot
    this._waiting = []; // settlers of sent batches, in send order
    this._timer = null;
    this._sequence = 0n;
    this._outstanding = new Set();
    this._closed = false;
    this._error = null;
    this._call = client.stub.ProduceStream();
    this._ended = new Promise((resolve) => {
      this._call.on('status', () => resolve());
    });
    this._call.on('data', (ack) => this._onAck(ack));
    this._call.on('error', (err) => this._fail(ObeliskError.from(err)));
    this._call.on('end', () => this._fail(new ObeliskError(status.UNAVAILABLE, 'the produce stream ended before all acks')));
  }

  /**
   * Queues one record; resolves with `{partition, offset}` once it is durable, or rejects with an
   * ObeliskError if the broker refuses its batch or the stream breaks. Strings are UTF-8 encoded.
   * `timestampNs` unset: the broker stamps the arrival time. `partition` unset: chosen from the
   * key (FNV-1a), or round-robin for an empty key.
   * @param {string} topic
   * @param {{key?: Buffer|string, value?: Buffer|string, headers?: Object<string, Buffer|string>,
   *   timestampNs?: bigint|number|string, partition?: number}} record
   * @returns {Promise<{partition: number, offset: bigint}>}
   */
  send(topic, record) {
    if (this._closed || this._error) {
      return Promise.reject(this._error ?? new ObeliskError(status.CANCELLED, 'the producer is closed'));
    }
    const msg = toProducerRecord(record);
    const promise = new Promise((resolve, reject) => {
      if (this._batch && this._batch.topic !== topic) this._seal();
      if (!this._batch) {
        this._batch = { topic, records: [], settlers: [] };
        this._timer = setTimeout(() => this._seal(), this._lingerMs);
      }
      this._batch.records.push(msg);
      this._batch.settlers.push({ resolve, reject });
      if (this._batch.records.length >= this._batchRecords) this._seal();
    });
    this._outstanding.add(promise);
    const forget = () => this._outstanding.delete(promise);
    promise.then(forget, forget);
    return promise;
  }

  /** Sends what is queued now (without lingering) and waits until every outstanding send settled. */
  async flush() {
    this._seal();
    await Promise.allSettled([...this._outstanding]);
  }

  /** Flushes, then ends the stream. Later sends reject with CANCELLED. */
  async close() {
    if (!this._closed) {
      this._closed = true;
      await this.flush();
      this._call.end();
    }
    await this._ended;
  }

  /** Closes the batch being filled and sends what the in-flight limit allows. */
  _seal() {
    clearTimeout(this._timer);
    this._timer = null;
    if (this._batch) this._ready.push(this._batch);
    this._batch = null;
    while (this._ready.length > 0 && this._waiting.length < this._maxInFlight && !this._error) {
      const b = this._ready.shift();
      this._waiting.push(b.settlers);
      this._call.write({ sequence: (this._sequence++).toString(), topic: b.topic, records: b.records });
    }
  }

  _onAck(ack) {
    const settlers = this._waiting.shift();
    if (!settlers) return; // an ack for nothing we sent: ignore it
    if (ack.error) {
      const err = new ObeliskError(ack.error.code, ack.error.message);
      settlers.forEach((s) => s.reject(err));
    } else {
      settlers.forEach((s, i) => {
        const a = ack.acks[i];
        if (a) s.resolve({ partition: a.partition, offset: BigInt(a.offset) });
        else s.reject(new ObeliskError(status.INTERNAL, `the broker acked ${ack.acks.length} of ${settlers.length} records`));
      });
    }
    this._seal();
  }

  /** The stream broke or ended: every record not yet acknowledged fails with `err`. */
  _fail(err) {
    if (this._error) return;
    const pending = this._waiting.flat().concat(this._ready.flatMap((b) => b.settlers), this._batch?.settlers ?? []);
    if (pending.length === 0 && this._closed) {
      this._error = new ObeliskError(status.CANCELLED, 'the producer is closed');
      return;
    }
    this._error = err;
    clearTimeout(this._timer);
    this._waiting = [];
    this._ready = [];
    this._batch = null;
    pending.forEach((s) => s.reject(err));
  }
}

module.exports = { Producer };

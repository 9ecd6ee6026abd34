'use strict';
/**
 * @module producer — records are batched (by count or linger) onto one ProduceStream; each
 * `send` returns a promise of the record's ack, resolved once the broker stored it durably.
 * The server answers batches in the order they were sent, so acks are matched by position.
 *
 * By default the producer is idempotent (as the Rust producer): it takes a producer id and epoch
 * from `InitProducer`, routes every record to its partition itself (the broker's rule: an
 * explicit partition, else FNV-1a 32 of a non-empty key modulo the partition count, else
 * round-robin; the count comes from `DescribeTopic`), and numbers each partition's records. When
 * the stream breaks (UNAVAILABLE, a cut connection) or an ack does not come within
 * `requestTimeoutMs`, it reconnects and sends every unacknowledged batch again, unchanged: the
 * broker answers a retry of a batch it already stored with the original offsets, so a record is
 * stored once however often it is sent. A batch to a topic that does not exist yet is sent
 * without idempotence (it creates the topic); the next batches are idempotent. A broken stream
 * with such a batch in flight, or of a producer made with `idempotent: false`, fails the records
 * in flight, as retrying them could store them twice.
 */

const { status } = require('@grpc/grpc-js');
const { ObeliskError } = require('./errors');
const { toProducerRecord } = require('./records');
const { unary } = require('./client');

/** Codes after which a batch may or may not have been stored, so an idempotent one is sent again. */
const RETRIABLE = new Set([status.UNAVAILABLE, status.DEADLINE_EXCEEDED, status.UNKNOWN, status.CANCELLED, status.INTERNAL]);

/** The broker's key hash (FNV-1a, 32 bit). */
function fnv1a32(buf) {
  let h = 0x811c9dc5;
  for (const b of buf) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h;
}

/**
 * A batching producer over one ProduceStream, idempotent by default. A batch holds records of one
 * topic; records sent through one producer are stored in send order per partition. Call
 * {@link Producer#close}.
 */
class Producer {
  /**
   * @param {import('./client').Client} client
   * @param {{batchRecords?: number, lingerMs?: number, maxInFlight?: number, idempotent?: boolean,
   *   requestTimeoutMs?: number, maxRetries?: number}} [config]
   *   A batch is sent at `batchRecords` records or `lingerMs` after its first record; at most
   *   `maxInFlight` batches are unacknowledged at once (more wait, in order). `idempotent`
   *   (default true): retry safely; `requestTimeoutMs` (30 s): how long the oldest batch may wait
   *   for its ack before the stream counts as broken; `maxRetries` (10): reconnections in a row
   *   before the records in flight fail.
   */
  constructor(client, { batchRecords = 500, lingerMs = 2, maxInFlight = 16, idempotent = true, requestTimeoutMs = 30_000, maxRetries = 10 } = {}) {
    this._client = client;
    this._batchRecords = Math.max(1, batchRecords);
    this._lingerMs = Math.max(0, lingerMs);
    this._maxInFlight = Math.max(1, maxInFlight);
    this._requestTimeoutMs = Math.max(1, requestTimeoutMs);
    this._maxRetries = Math.max(0, maxRetries);
    this._batch = null; // { topic, records: [], settlers: [] } being filled
    this._ready = []; // full batches waiting for an in-flight slot
    this._waiting = []; // sent batches, in send order: { req, settlers, sentAt }
    this._timer = null;
    this._ackTimer = null;
    this._sequence = 0n;
    this._outstanding = new Set();
    this._closed = false;
    this._error = null;
    this._pumping = false;
    this._reconnecting = false;
    this._failures = 0;
    /** Whether batches carry a producer id and sequences (and are retried). */
    this.idempotent = idempotent;
    /** The id InitProducer handed out (a decimal string; null until then, or when not idempotent). */
    this.producerId = null;
    /** The current epoch of `producerId` (a new one after a batch failed at the broker). */
    this.producerEpoch = null;
    this._sequences = new Map(); // `${topic}/${partition}` -> next sequence
    this._partitions = new Map(); // topic -> partition count
    this._roundRobin = 0;
    this._reinit = false; // a batch failed at the broker: the next one starts a new epoch
    this._init = idempotent
      ? unary(client.stub, 'InitProducer', {}, client.timeoutMs).then((g) => {
        this.producerId = g.producerId;
        this.producerEpoch = g.producerEpoch;
      }, (err) => this._fail(ObeliskError.from(err)))
      : Promise.resolve();
    this._ended = new Promise((resolve) => { this._endResolve = resolve; });
    this._call = null;
    this._open();
  }

  /**
   * Queues one record; resolves with `{partition, offset}` once it is durable, or rejects with an
   * ObeliskError if the broker refuses its batch or the stream breaks (for good: an idempotent
   * producer first retries). Strings are UTF-8 encoded. `timestampNs` unset: the broker stamps
   * the arrival time. `partition` unset: chosen from the key (FNV-1a), or round-robin for an
   * empty key.
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
      clearTimeout(this._ackTimer);
      if (this._call) this._call.end();
      else if (!this._error) {
        this._error = new ObeliskError(status.CANCELLED, 'the producer is closed');
        this._endResolve();
      }
    }
    await this._ended;
  }

  /** Opens a ProduceStream; events of a stream replaced since are ignored. */
  _open() {
    const call = this._client.stub.ProduceStream();
    this._call = call;
    call.on('data', (ack) => { if (call === this._call) this._onAck(ack); });
    call.on('error', (err) => { if (call === this._call) this._broken(ObeliskError.from(err)); });
    call.on('end', () => {
      if (call === this._call) this._broken(new ObeliskError(status.UNAVAILABLE, 'the produce stream ended before all acks'));
    });
    call.on('status', () => { if (call === this._call && this._error) this._endResolve(); });
    return call;
  }

  /** Closes the batch being filled and sends what the in-flight limit allows. */
  _seal() {
    clearTimeout(this._timer);
    this._timer = null;
    if (this._batch) this._ready.push(this._batch);
    this._batch = null;
    this._pump();
  }

  /** Sends ready batches in order (one pump at a time: numbering a batch may ask the broker). */
  async _pump() {
    if (this._pumping) return;
    this._pumping = true;
    try {
      while (this._ready.length > 0 && this._waiting.length < this._maxInFlight && !this._error) {
        const idempotence = await this._idempotence(this._ready[0]);
        if (this._error) break;
        const b = this._ready.shift();
        const req = { sequence: (this._sequence++).toString(), topic: b.topic, records: b.records };
        if (idempotence) req.idempotence = idempotence;
        this._waiting.push({ req, settlers: b.settlers, sentAt: Date.now() });
        // While reconnecting, the new stream sends it with the other unacknowledged batches.
        if (!this._reconnecting) (this._call ?? this._open()).write(req);
        this._armAckTimer();
      }
    } finally {
      this._pumping = false;
    }
  }

  /**
   * The identity and first sequence per partition of batch `b`, routing its records to their
   * partitions; null when not idempotent or the topic's partitions are unknown (it does not
   * exist yet), as the Rust client.
   */
  async _idempotence(b) {
    if (!this.idempotent) return null;
    await this._init;
    if (this._error || this.producerId === null) return null;
    let n = this._partitions.get(b.topic);
    if (n === undefined) {
      try {
        n = (await this._client.describeTopic(b.topic))?.config?.partitions ?? 0;
      } catch {
        n = 0; // does not exist yet (created by this batch) or unreachable: ask again next time
      }
      if (n <= 0) return null;
      this._partitions.set(b.topic, n);
    }
    if (this._reinit) {
      try {
        const g = await unary(this._client.stub, 'InitProducer', { producerId: this.producerId }, this._client.timeoutMs);
        this.producerEpoch = g.producerEpoch;
        this._sequences.clear();
        this._reinit = false;
      } catch {
        return null;
      }
    }
    const counts = new Map();
    for (const r of b.records) {
      let p;
      if (r.partition !== undefined && r.partition !== null) p = r.partition;
      else if (n <= 1) p = 0;
      else if (r.key.length === 0) p = (++this._roundRobin) % n;
      else p = fnv1a32(r.key) % n;
      r.partition = p;
      counts.set(p, (counts.get(p) ?? 0) + 1);
    }
    const sequences = {};
    for (const [p, count] of counts) {
      const k = `${b.topic}/${p}`;
      const first = this._sequences.get(k) ?? 0;
      sequences[p] = first;
      this._sequences.set(k, (first + count) | 0); // wraps as an int32, as the broker's
    }
    return { producerId: this.producerId, producerEpoch: this.producerEpoch, sequences };
  }

  /** Watches the oldest unacknowledged batch: past `requestTimeoutMs` the stream counts as broken. */
  _armAckTimer() {
    clearTimeout(this._ackTimer);
    this._ackTimer = null;
    const oldest = this._waiting[0];
    if (!oldest || this._reconnecting || this._error) return;
    const due = oldest.sentAt + this._requestTimeoutMs;
    this._ackTimer = setTimeout(() => {
      if (this._waiting[0] !== oldest) return this._armAckTimer();
      this._broken(new ObeliskError(status.DEADLINE_EXCEEDED, `no acknowledgement within ${this._requestTimeoutMs} ms`));
    }, Math.max(0, due - Date.now()));
  }

  _onAck(ack) {
    if (!this._waiting[0]) return; // an ack for nothing we sent: ignore it
    // replication (issue 17): an idempotent batch refused as UNAVAILABLE by a cluster node (no
    // longer the leader, or not replicated) is sent again, unchanged, to the leader.
    if (ack.error && ack.error.code === status.UNAVAILABLE && this._waiting[0].req.idempotence
        && this._client.nodes.length > 1) {
      this._broken(new ObeliskError(ack.error.code, ack.error.message));
      return;
    }
    const sent = this._waiting.shift();
    this._failures = 0;
    const { settlers } = sent;
    if (ack.error) {
      // Its sequences were never stored: continue at a new epoch, not after a gap.
      if (sent.req.idempotence) this._reinit = true;
      const err = new ObeliskError(ack.error.code, ack.error.message);
      settlers.forEach((s) => s.reject(err));
    } else {
      settlers.forEach((s, i) => {
        const a = ack.acks[i];
        if (a) s.resolve({ partition: a.partition, offset: BigInt(a.offset) });
        else s.reject(new ObeliskError(status.INTERNAL, `the broker acked ${ack.acks.length} of ${settlers.length} records`));
      });
    }
    this._armAckTimer();
    this._pump();
  }

  /**
   * The stream broke, ended or timed out. Idempotent batches are sent again on a new stream
   * (after a backoff; up to `maxRetries` times in a row); otherwise every record not yet
   * acknowledged fails with `err`.
   */
  _broken(err) {
    if (this._error || this._reconnecting) return;
    const old = this._call;
    if (this._closed && this._waiting.length === 0 && this._ready.length === 0 && !this._batch) {
      this._error = new ObeliskError(status.CANCELLED, 'the producer is closed');
      this._endResolve();
      return;
    }
    const safe = this._waiting.every((s) => s.req.idempotence);
    if (!(this.idempotent && safe && RETRIABLE.has(err.code) && this._failures < this._maxRetries)) {
      this._fail(err);
      return;
    }
    this._call = null; // the old stream's events are ignored from now on
    old?.cancel();
    this._client.follow(err); // replication (issue 17): the next stream goes to the leader
    clearTimeout(this._ackTimer);
    if (this._waiting.length === 0) return; // idle: the next batch opens a new stream
    this._failures += 1;
    this._reconnecting = true;
    const backoff = Math.min(2000, 100 * 2 ** Math.min(this._failures, 5));
    setTimeout(() => {
      this._reconnecting = false;
      if (this._error) return;
      const call = this._open();
      for (const s of this._waiting) {
        s.sentAt = Date.now();
        call.write(s.req);
      }
      this._armAckTimer();
      this._pump();
    }, backoff);
  }

  /** Every record not yet acknowledged fails with `err`; the producer stops. */
  _fail(err) {
    if (this._error) return;
    const pending = this._waiting.flatMap((s) => s.settlers).concat(this._ready.flatMap((b) => b.settlers), this._batch?.settlers ?? []);
    clearTimeout(this._timer);
    clearTimeout(this._ackTimer);
    this._error = pending.length === 0 && this._closed ? new ObeliskError(status.CANCELLED, 'the producer is closed') : err;
    this._waiting = [];
    this._ready = [];
    this._batch = null;
    const call = this._call;
    this._call = null;
    call?.cancel();
    this._endResolve();
    pending.forEach((s) => s.reject(err));
  }
}

module.exports = { Producer, fnv1a32, RETRIABLE };

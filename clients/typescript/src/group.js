'use strict';
/**
 * @module group — the GroupConsumer: a member of a consumer group (a JoinGroup stream) that polls
 * only the partitions the server assigns it.
 *
 * - `onAssigned` / `onRevoked` / `onLost` get arrays of `{topic, partition}`.
 * - A revoked partition is committed (the positions after the records already returned by
 *   `poll`: records returned by one poll count as processed at the next call) and only then
 *   released, so its next owner starts where this member stopped.
 * - A fenced call (FAILED_PRECONDITION) or an ended stream makes it rejoin: `onLost` for what it
 *   held, then `onAssigned`.
 * - A long poll is cut short when the assignment changes, so a revocation is answered at once.
 */

const { status } = require('@grpc/grpc-js');
const { unary } = require('./client');
const { ObeliskError } = require('./errors');
const { fromRecord } = require('./records');

const key = (topic, partition) => `${topic}\u0000${partition}`;
const unkey = (k) => { const [topic, p] = k.split('\u0000'); return { topic, partition: Number(p) }; };
const flatten = (tps) => new Set(tps.flatMap((t) => t.partitions.map((p) => key(t.topic, p))));

function grouped(keys) {
  const by = new Map();
  for (const k of [...keys].sort()) {
    const { topic, partition } = unkey(k);
    by.set(topic, [...(by.get(topic) ?? []), partition]);
  }
  return [...by].map(([topic, partitions]) => ({ topic, partitions }));
}

/** One JoinGroup stream: heartbeats on a timer, the latest response kept, waiters told of changes. */
class Session {
  constructor(stub, join) {
    this.latest = null;
    this.ended = null;
    this.dirty = true;
    this._waiters = [];
    this.call = stub.JoinGroup();
    this.ready = new Promise((resolve, reject) => {
      this.call.on('data', (msg) => {
        const first = this.latest === null;
        this.latest = msg;
        if (first) {
          this.memberId = msg.memberId;
          this.epoch = msg.memberEpoch;
          this._timer = setInterval(() => this.send({ heartbeat: {} }), Math.max(msg.sessionTimeoutMs, 300) / 3);
          resolve();
        }
        this._notify();
      });
      this.call.on('error', (err) => {
        this.ended ??= err.details || err.message;
        if (this.latest === null) reject(ObeliskError.from(err));
        this._notify();
      });
      this.call.on('end', () => {
        this.ended ??= 'the broker ended the membership';
        if (this.latest === null) reject(new ObeliskError(status.UNAVAILABLE, this.ended));
        this._notify();
      });
    });
    this.call.write({ join });
  }

  /** Resolves at the next change (a response or the end of the stream). */
  changed() {
    return new Promise((resolve) => this._waiters.push(resolve));
  }

  _notify() {
    this.dirty = true;
    const waiters = this._waiters;
    this._waiters = [];
    for (const w of waiters) w();
    if (this.ended && this._timer) clearInterval(this._timer);
  }

  send(req) {
    if (!this.ended) this.call.write(req);
  }

  close() {
    if (this._timer) clearInterval(this._timer);
    this.ended ??= 'closed';
    this.call.end();
    this.call.cancel();
  }
}

/** A member of `group` consuming `topics`; create with `await GroupConsumer.join(...)`. */
class GroupConsumer {
  /**
   * @param {import('./client').Client} client
   * @param {string} group
   * @param {string[]} topics
   * @param {{instanceId?: string, clientId?: string, maxRecords?: number, maxWaitMs?: number,
   *   onAssigned?: Function, onRevoked?: Function, onLost?: Function}} [config]
   */
  static async join(client, group, topics, config = {}) {
    const c = new GroupConsumer(client, group, topics, config);
    await c._open();
    await c._reconcile();
    return c;
  }

  constructor(client, group, topics, {
    instanceId = '', clientId = 'obelisk-node', maxRecords = 500, maxWaitMs = 1000, onAssigned, onRevoked, onLost,
  } = {}) {
    this._client = client;
    this.group = group;
    this.topics = [...topics];
    this.maxRecords = maxRecords;
    this.maxWaitMs = maxWaitMs;
    this._join = { group, topics: this.topics, instanceId, clientId };
    this._callbacks = { onAssigned, onRevoked, onLost };
    this._assigned = new Set();
    this._delivered = new Map();
    this._committed = new Map();
    this._next = 0;
    this._session = null;
  }

  async _open() {
    const s = new Session(this._client.stub, this._join);
    await s.ready;
    this._session = s;
  }

  get memberId() { return this._session?.memberId ?? ''; }

  get memberEpoch() { return this._session?.epoch ?? '0'; }

  /** Partitions this member consumes now, sorted. */
  get assignment() { return [...this._assigned].sort().map(unkey); }

  _tell(name, keys) {
    const cb = this._callbacks[name];
    if (cb && keys.length > 0) cb(keys.map(unkey));
  }

  async _reconcile() {
    let s = this._session;
    if (s === null || s.ended) {
      const lost = [...this._assigned].sort();
      this._assigned.clear();
      for (const k of lost) this._delivered.delete(k);
      this._tell('onLost', lost);
      if (s) s.close();
      this._session = null;
      await this._open();
      s = this._session;
    }
    s.dirty = false;
    const resp = s.latest;
    const revoke = flatten(resp.revoke);
    const mine = [...revoke].filter((k) => this._assigned.has(k)).sort();
    if (mine.length > 0) {
      this._tell('onRevoked', mine);
      // Released even if the commit fails: the next owner reads again from the last commit (at
      // least once), where holding on would stall the partition.
      await this._commitKeys(mine).catch(() => {});
      for (const k of mine) { this._assigned.delete(k); this._delivered.delete(k); }
    }
    if (revoke.size > 0) s.send({ release: { partitions: grouped(revoke) } });
    const now = flatten(resp.assigned);
    const gone = [...this._assigned].filter((k) => !now.has(k)).sort();
    const fresh = [...now].filter((k) => !this._assigned.has(k)).sort();
    for (const k of gone) { this._assigned.delete(k); this._delivered.delete(k); }
    this._tell('onLost', gone);
    for (const k of fresh) this._assigned.add(k);
    this._tell('onAssigned', fresh);
  }

  /**
   * Records from this member's partitions (long poll up to `maxWaitMs`, cut short by an
   * assignment change). The records of the previous call count as processed.
   */
  async poll() {
    await this._reconcile();
    const s = this._session;
    const wait = this.maxWaitMs;
    const topics = [...new Set([...this._assigned].map((k) => unkey(k).topic))].sort();
    if (topics.length === 0) {
      let timer;
      await Promise.race([s.changed(), new Promise((r) => { timer = setTimeout(r, wait); })]);
      clearTimeout(timer);
      return [];
    }
    this._next += 1;
    const topic = topics[this._next % topics.length];
    const req = {
      topic, group: this.group, maxRecords: this.maxRecords, maxWaitMs: topics.length > 1 ? 0 : wait,
      memberId: s.memberId, memberEpoch: s.epoch,
    };
    let call;
    const polled = new Promise((resolve, reject) => {
      call = this._client.stub.Poll(req, { deadline: Date.now() + this._client.timeoutMs + wait },
        (err, resp) => (err ? reject(err) : resolve(resp)));
    });
    polled.catch(() => {});
    let resp;
    try {
      resp = await Promise.race([polled, s.changed().then(() => null)]);
    } catch (err) {
      if (err.code === status.FAILED_PRECONDITION) {
        s.ended = err.details;
        return [];
      }
      throw ObeliskError.from(err);
    }
    if (resp === null) {
      call.cancel();
      return [];
    }
    const records = resp.records.map(fromRecord);
    for (const r of records) {
      const k = key(topic, r.partition);
      const next = r.offset + 1n;
      if ((this._delivered.get(k) ?? -1n) < next) this._delivered.set(k, next);
    }
    return records;
  }

  /**
   * Commits the positions after every record returned so far. A fenced commit rejects with
   * FAILED_PRECONDITION, changes nothing, and the next poll rejoins.
   */
  async commit() {
    try {
      await this._commitKeys([...this._delivered.keys()]);
    } catch (err) {
      if (err.code === status.FAILED_PRECONDITION && this._session) this._session.ended = err.message;
      throw err;
    }
  }

  async _commitKeys(keys) {
    const s = this._session;
    if (!s) return;
    const byTopic = new Map();
    const done = [];
    for (const k of keys) {
      const next = this._delivered.get(k);
      if (next === undefined || this._committed.get(k) === next) continue;
      const { topic, partition } = unkey(k);
      byTopic.set(topic, [...(byTopic.get(topic) ?? []), { partition, offset: next.toString() }]);
      done.push([k, next]);
    }
    for (const [topic, offsets] of byTopic) {
      await unary(this._client.stub, 'Commit', {
        topic, group: this.group, offsets, memberId: s.memberId, memberEpoch: s.epoch,
      }, this._client.timeoutMs);
    }
    for (const [k, next] of done) this._committed.set(k, next);
  }

  /** Commits what was returned and leaves the group: its partitions move at once. */
  async close() {
    try {
      await this.commit();
    } finally {
      const s = this._session;
      this._session = null;
      if (s) {
        s.send({ leave: {} });
        const deadline = Date.now() + 5000;
        while (!s.ended && Date.now() < deadline) {
          let timer;
          await Promise.race([s.changed(), new Promise((r) => { timer = setTimeout(r, 100); })]);
          clearTimeout(timer);
        }
        s.close();
      }
    }
  }
}

module.exports = { GroupConsumer };

'use strict';
/** @module client — the connection to a broker; unary calls return promises of plain objects. */

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const { ObeliskError } = require('./errors');
const { toProducerRecord } = require('./records');

/** The repository's proto/ (override with the `protoDir` option or OBELISK_PROTO_DIR). */
const DEFAULT_PROTO_DIR = path.resolve(__dirname, '..', '..', '..', 'proto');
/** How proto/ is loaded: camelCase fields, 64-bit integers as decimal strings, bytes as Buffer. */
const LOADER_OPTIONS = { keepCase: false, longs: String, enums: String, defaults: true, oneofs: true };
/** The server's default largest gRPC message (64 MiB). */
const MAX_MESSAGE_BYTES = 64 << 20;
/** The gRPC health-check service name of the broker. */
const HEALTH_SERVICE = 'obelisk.v1.Broker';

/** grpc.health.v1.Health, as a protobufjs JSON descriptor (small enough to inline). */
const HEALTH_JSON = {
  nested: { grpc: { nested: { health: { nested: { v1: { nested: {
    HealthCheckRequest: { fields: { service: { type: 'string', id: 1 } } },
    HealthCheckResponse: {
      fields: { status: { type: 'ServingStatus', id: 1 } },
      nested: { ServingStatus: { values: { UNKNOWN: 0, SERVING: 1, NOT_SERVING: 2, SERVICE_UNKNOWN: 3 } } },
    },
    Health: { methods: { Check: { requestType: 'HealthCheckRequest', responseType: 'HealthCheckResponse' } } },
  } } } } } } },
};

const loaded = new Map();
/** Loads (once per directory) the obelisk.v1 package from `protoDir`. */
function loadProto(protoDir) {
  if (!loaded.has(protoDir)) {
    const def = protoLoader.loadSync('obelisk/v1/broker.proto', { ...LOADER_OPTIONS, includeDirs: [protoDir] });
    loaded.set(protoDir, grpc.loadPackageDefinition(def).obelisk.v1);
  }
  return loaded.get(protoDir);
}

/** Calls a unary method; resolves with the response, rejects with an ObeliskError. */
function unary(stub, method, request, timeoutMs) {
  return new Promise((resolve, reject) => {
    stub[method](request, { deadline: Date.now() + timeoutMs }, (err, resp) => {
      if (err) reject(ObeliskError.from(err));
      else resolve(resp);
    });
  });
}

/** PEM bytes as given, or read from a path. */
function pem(value) {
  if (value === undefined || value === null) return undefined;
  return Buffer.isBuffer(value) ? value : require('node:fs').readFileSync(value);
}

/**
 * The channel credentials for `options` (security): TLS when `ca` or `cert` is given or the
 * address is `https://`, a client certificate (mTLS) with `cert` and `key`, and the bearer
 * `token` on every call. Each defaults to OBELISK_CA, OBELISK_CERT, OBELISK_KEY, OBELISK_TOKEN.
 */
function credentials(addr, options) {
  const env = process.env;
  const ca = options.ca ?? env.OBELISK_CA;
  const cert = options.cert ?? env.OBELISK_CERT;
  const key = options.key ?? env.OBELISK_KEY;
  const token = options.token ?? env.OBELISK_TOKEN;
  if ((cert === undefined) !== (key === undefined)) throw new Error('a client certificate needs its key (cert with key)');
  const tls = addr.startsWith('https://') || ca !== undefined || cert !== undefined;
  if (!tls) {
    return { channel: grpc.credentials.createInsecure(), metadata: token ? bearer(token) : undefined };
  }
  let channel = grpc.credentials.createSsl(pem(ca) ?? null, pem(key) ?? null, pem(cert) ?? null);
  if (token) {
    const call = grpc.credentials.createFromMetadataGenerator((_params, done) => done(null, bearer(token)));
    channel = grpc.credentials.combineChannelCredentials(channel, call);
  }
  return { channel, metadata: undefined };
}

function bearer(token) {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  return md;
}

/**
 * A channel to one broker: `new Client('127.0.0.1:50051')` (`http://` is accepted; plaintext).
 * `stub` is the generated `obelisk.v1.Broker` client for calls this layer does not wrap.
 * Options `ca`, `cert`, `key` (paths or PEM Buffers) and `token` turn on TLS, mTLS and the
 * bearer token (see `credentials`); `serverName` overrides the name checked in the certificate.
 */
class Client {
  /**
   * @param {string} [addr] host:port of the broker.
   * @param {{timeoutMs?: number, protoDir?: string, channelOptions?: object, compression?: 'gzip'}} [options]
   *   `compression: 'gzip'` compresses every message on the wire (the broker also accepts zstd,
   *   which grpc-js does not offer).
   */
  constructor(addr = '127.0.0.1:50051', options = {}) {
    // replication (issue 17): several nodes of a cluster ('a,b,c' or an array): calls go to the
    // leader, following not-leader answers and moving on from unreachable nodes.
    const addrs = (Array.isArray(addr) ? addr : addr.split(',')).map((a) => a.trim()).filter((a) => a);
    if (addrs.length === 0) throw new TypeError('no broker address given');
    addr = addrs.find((a) => a.startsWith('https://')) ?? addrs[0];
    /** Every node given, as host:port. */
    this.nodes = addrs.map((a) => a.replace(/^https?:\/\//, ''));
    this._nextNode = 1;
    this._oldStubs = [];
    this.addr = this.nodes[0];
    this.timeoutMs = options.timeoutMs ?? 30_000;
    const protoDir = options.protoDir ?? process.env.OBELISK_PROTO_DIR ?? DEFAULT_PROTO_DIR;
    /** The loaded obelisk.v1 package (message constructors are not needed: pass plain objects). */
    this.proto = loadProto(protoDir);
    const codecs = { undefined: 0, gzip: 2 };
    if (!(String(options.compression) in codecs)) {
      throw new TypeError(`compression must be undefined or 'gzip', not ${options.compression}`);
    }
    const channelOptions = {
      'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
      'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
      ...(options.serverName ? { 'grpc.ssl_target_name_override': options.serverName } : {}),
      'grpc.default_compression_algorithm': codecs[String(options.compression)],
      ...options.channelOptions,
    };
    const creds = credentials(addr, options);
    this._credentials = creds.channel;
    if (creds.metadata) {
      // Plaintext with a token (loopback): grpc-js sends call credentials only over TLS, so the
      // token goes in each call's metadata through an interceptor.
      const md = creds.metadata;
      channelOptions.interceptors = [(opts, next) => new grpc.InterceptingCall(next(opts), {
        start(metadata, listener, nxt) { metadata.merge(md); nxt(metadata, listener); },
      })];
    }
    this._channelOptions = channelOptions;
    this.stub = new this.proto.Broker(this.addr, creds.channel, channelOptions);
  }

  /** Points the client's stub at the node `target` (host:port). */
  _open(target) {
    this._oldStubs.push(this.stub); // calls still on it finish; closed with the client
    this.addr = target;
    this._health = undefined;
    this.stub = new this.proto.Broker(target, this._credentials, this._channelOptions);
  }

  /**
   * replication (issue 17): after `err`, points the client at the cluster's leader (the one a
   * not-leader error names) or, when the node could not be reached, at the next node given.
   * Returns whether the call should be sent again (nothing was stored).
   */
  follow(err) {
    if (err.notLeader) {
      if (err.leader && err.leader !== this.addr) this._open(err.leader);
      return true; // no leader named yet (an election): retry after a pause
    }
    if (typeof err.neverSent === 'function' && err.neverSent() && this.nodes.length > 1) {
      this._open(this.nodes[this._nextNode % this.nodes.length]);
      this._nextNode += 1;
      return true;
    }
    return false;
  }

  /**
   * Calls `method` of the stub on the leader: follows not-leader answers and, while no node can
   * be reached, tries the others, for up to `patienceMs` (default: the client's timeout). Any
   * other error rejects at once: a call that reached a broker and failed may have been stored.
   */
  async call(method, request, patienceMs = this.timeoutMs) {
    const deadline = Date.now() + patienceMs;
    let pause = 20;
    for (;;) {
      try {
        return await unary(this.stub, method, request, this.timeoutMs);
      } catch (e) {
        if (Date.now() + pause > deadline || !this.follow(e)) throw e;
      }
      await new Promise((r) => setTimeout(r, pause));
      pause = Math.min(200, pause * 2);
    }
  }

  /** Resolves once the channel is connected; rejects with UNAVAILABLE after `timeoutMs`. */
  waitReady(timeoutMs = 10_000) {
    return new Promise((resolve, reject) => {
      this.stub.waitForReady(Date.now() + timeoutMs, (err) => {
        if (err) reject(new ObeliskError(grpc.status.UNAVAILABLE, `no broker answered at ${this.addr}: ${err.message}`));
        else resolve();
      });
    });
  }

  /** The broker's health status ('SERVING', 'NOT_SERVING', ...) via grpc.health.v1. */
  async checkHealth(service = HEALTH_SERVICE, timeoutMs = this.timeoutMs) {
    if (!this._health) {
      const def = protoLoader.fromJSON(HEALTH_JSON, { enums: String });
      const Health = grpc.loadPackageDefinition(def).grpc.health.v1.Health;
      this._health = new Health(this.addr, this._credentials, { channelOverride: this.stub.getChannel() });
    }
    const resp = await unary(this._health, 'Check', { service }, timeoutMs);
    return resp.status;
  }

  /** A batching {@link Producer} on this channel. */
  producer(config) {
    const { Producer } = require('./producer');
    return new Producer(this, config);
  }

  /** A {@link Consumer} of `topic` in `group`. */
  consumer(topic, group, config) {
    const { Consumer } = require('./consumer');
    return new Consumer(this, topic, group, config);
  }

  /** Joins `group` as a {@link GroupConsumer} of `topics` (the server assigns its partitions). */
  groupConsumer(group, topics, config) {
    const { GroupConsumer } = require('./group');
    return GroupConsumer.join(this, group, topics, config);
  }

  /** A {@link SharedConsumer}: a worker of the shared group `group` on `topic` (issue 14). */
  sharedConsumer(topic, group, config) {
    const { SharedConsumer } = require('./shared');
    return new SharedConsumer(this, topic, group, config);
  }

  /** A {@link SharedStream}: a worker of the shared group `group` on `topic` on one
   * SharedConsume stream (records pushed to it, settled on the stream). */
  sharedStream(topic, group, config) {
    const { SharedStream } = require('./shared');
    return new SharedStream(this, topic, group, config);
  }

  /** A group's committed offsets, state, epoch and members. */
  async describeGroup(group) {
    return unary(this.stub, 'DescribeGroup', { group }, this.timeoutMs);
  }

  /** Deletes a group (FAILED_PRECONDITION while members are connected). */
  async deleteGroup(group) {
    await this.call('DeleteGroup', { group });
  }

  /** Appends records in one unary call; resolves once all are durable, with one ack per record. */
  async produce(topic, records) {
    const resp = await this.call('Produce', { topic, records: records.map(toProducerRecord) });
    return resp.acks.map((a) => ({ partition: a.partition, offset: BigInt(a.offset) }));
  }

  /** Creates a topic (0 or unset = the server's default for each setting). */
  async createTopic(name, { partitions = 0, retentionMs = 0, retentionBytes = 0 } = {}) {
    const config = { partitions, retentionMs: String(retentionMs), retentionBytes: String(retentionBytes) };
    return (await this.call('CreateTopic', { name, config })).topic;
  }

  /** A topic's config and its partitions' offsets (64-bit numbers as decimal strings). */
  async describeTopic(name) {
    return (await unary(this.stub, 'DescribeTopic', { name }, this.timeoutMs)).topic;
  }

  /** Every topic. */
  async listTopics() {
    return (await unary(this.stub, 'ListTopics', {}, this.timeoutMs)).topics;
  }

  /** Deletes a topic and its data. */
  async deleteTopic(name) {
    await unary(this.stub, 'DeleteTopic', { name }, this.timeoutMs);
  }

  /** Closes the channel. */
  close() {
    this.stub.close();
    for (const s of this._oldStubs) s.close();
  }
}

module.exports = { Client, unary, HEALTH_SERVICE, DEFAULT_PROTO_DIR, LOADER_OPTIONS };

// Types of the Obelisk Node.js client (src/*.js). 64-bit integers are `bigint`, bytes are `Buffer`.
import type { Client as GrpcClient } from '@grpc/grpc-js';

/** Bytes as a Buffer or a string (encoded as UTF-8). */
export type BytesLike = Buffer | Uint8Array | string;

/** A record to produce. */
export interface ProducerRecord {
  /** Routing key: records with the same non-empty key go to the same partition (FNV-1a). */
  key?: BytesLike;
  value?: BytesLike;
  headers?: Record<string, BytesLike>;
  /** Unix time in ns; unset: the broker stamps the arrival time. */
  timestampNs?: bigint | number | string;
  /** Explicit partition; unset: chosen from the key, or round-robin for an empty key. */
  partition?: number;
}

/** A stored record, as read back. */
export interface ConsumedRecord {
  partition: number;
  offset: bigint;
  timestampNs: bigint;
  key: Buffer;
  value: Buffer;
  headers: Record<string, Buffer>;
}

/** Where an acknowledged (durable) record was stored. */
export interface Ack {
  partition: number;
  offset: bigint;
}

/** A position for subscribe/reset. */
export type Position = 'earliest' | 'latest' | { offset: bigint | number } | { timestampNs: bigint | number | string };

/** An error from the broker: `code` is the gRPC status number, `codeName` its name. */
export class ObeliskError extends Error {
  constructor(code: number, message: string, cluster?: { notLeader?: boolean; leader?: string | null });
  readonly code: number;
  readonly codeName: string;
  /** The cluster node is not the leader (it stored nothing): send the call elsewhere. */
  readonly notLeader: boolean;
  /** The leader's gRPC address (host:port) a not-leader error names, when known. */
  readonly leader: string | null;
  /** Whether the call never reached a broker (no connection could be made). */
  neverSent(): boolean;
  static from(err: unknown): ObeliskError;
}

export interface ClientOptions {
  /** Deadline of unary calls (default 30 000). */
  timeoutMs?: number;
  /** Directory holding obelisk/v1/broker.proto (default: the repository's proto/, or OBELISK_PROTO_DIR). */
  protoDir?: string;
  channelOptions?: Record<string, unknown>;
  /** CA certificate (path or PEM) to trust for the broker's certificate; turns TLS on (default OBELISK_CA). */
  ca?: string | Buffer;
  /** Client certificate and key (paths or PEM) for brokers that require one (mTLS; OBELISK_CERT, OBELISK_KEY). */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** Bearer token sent with every call (default OBELISK_TOKEN). */
  token?: string;
  /** Name checked in the broker's certificate instead of the address's host. */
  serverName?: string;
  /** Transport compression of every message: 'gzip' (default: none). */
  compression?: 'gzip';
}

/** Partition configuration of a topic; 64-bit numbers as decimal strings. */
export interface TopicDescription {
  name: string;
  config: { partitions: number; retentionMs: string; retentionBytes: string };
  partitions: Array<{
    partition: number;
    logStartOffset: string;
    logEndOffset: string;
    sizeBytes: string;
    segments: number;
    readOnly: boolean;
  }>;
}

export const HEALTH_SERVICE: 'obelisk.v1.Broker';

/** A channel to one broker. */
export class Client {
  /** `addr`: one broker, or several nodes of a cluster ('a:1,b:2' or an array; writes follow the leader). */
  constructor(addr?: string | string[], options?: ClientOptions);
  /** The node calls go to now (host:port). */
  readonly addr: string;
  /** Every node given (host:port). */
  readonly nodes: string[];
  /** Points the client at the leader `err` names, or the next node when unreachable; whether to send again. */
  follow(err: ObeliskError): boolean;
  /** A unary call of the stub, sent to the leader (not-leader answers followed, unreachable nodes skipped). */
  call(method: string, request: object, patienceMs?: number): Promise<any>;
  readonly timeoutMs: number;
  /** The generated obelisk.v1.Broker client (grpc-js), for calls this layer does not wrap. */
  readonly stub: GrpcClient & Record<string, any>;
  waitReady(timeoutMs?: number): Promise<void>;
  /** 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN' or 'UNKNOWN'. */
  checkHealth(service?: string, timeoutMs?: number): Promise<string>;
  producer(config?: ProducerConfig): Producer;
  consumer(topic: string, group: string, config?: ConsumerConfig): Consumer;
  /** Joins `group` as a member consuming `topics`; the server assigns its partitions. */
  groupConsumer(group: string, topics: string[], config?: GroupConsumerConfig): Promise<GroupConsumer>;
  /** A worker of the shared group `group` on `topic` (issue 14). */
  sharedConsumer(topic: string, group: string, config?: SharedConsumerConfig): SharedConsumer;
  /** A worker of the shared group `group` on `topic` on one SharedConsume stream (issue 14). */
  sharedStream(topic: string, group: string, config?: SharedStreamConfig): SharedStream;
  /** A group's offsets, state ('empty' | 'stable' | 'reconciling'), epoch and members. */
  describeGroup(group: string): Promise<Record<string, any>>;
  deleteGroup(group: string): Promise<void>;
  produce(topic: string, records: ProducerRecord[]): Promise<Ack[]>;
  createTopic(name: string, config?: { partitions?: number; retentionMs?: number; retentionBytes?: number }): Promise<TopicDescription>;
  describeTopic(name: string): Promise<TopicDescription>;
  listTopics(): Promise<TopicDescription[]>;
  deleteTopic(name: string): Promise<void>;
  close(): void;
}

export interface ProducerConfig {
  /** Records per batch (default 500). */
  batchRecords?: number;
  /** How long a batch waits for more records (default 2 ms). */
  lingerMs?: number;
  /** Unacknowledged batches at once (default 16). */
  maxInFlight?: number;
  /**
   * Idempotent produce with safe retries (default true): a producer id from InitProducer, records
   * routed and numbered per partition, unacknowledged batches resent unchanged after UNAVAILABLE,
   * a cut connection or a timeout. false: a broken stream fails the records in flight.
   */
  idempotent?: boolean;
  /** How long the oldest unacknowledged batch may wait before the stream counts as broken (default 30 000 ms). */
  requestTimeoutMs?: number;
  /** Reconnections in a row (without an ack between) before the records in flight fail (default 10). */
  maxRetries?: number;
}

/** A batching producer over one ProduceStream, idempotent by default. */
export class Producer {
  constructor(client: Client, config?: ProducerConfig);
  /** Whether batches carry a producer id and sequences (and are retried). */
  readonly idempotent: boolean;
  /** The id InitProducer handed out, as a decimal string (null until then, or when not idempotent). */
  readonly producerId: string | null;
  /** The current epoch of `producerId` (a new one after a batch failed at the broker). */
  readonly producerEpoch: number | null;
  send(topic: string, record: ProducerRecord): Promise<Ack>;
  flush(): Promise<void>;
  close(): Promise<void>;
}

export interface ConsumerConfig {
  maxRecords?: number;
  maxWaitMs?: number;
  startIfNew?: 'earliest' | 'latest';
}

/** Reads one topic as one consumer group (at-least-once: commit after processing). */
export class Consumer implements AsyncIterable<ConsumedRecord> {
  constructor(client: Client, topic: string, group: string, config?: ConsumerConfig);
  readonly topic: string;
  readonly group: string;
  maxRecords: number;
  maxWaitMs: number;
  poll(options?: { maxRecords?: number; maxWaitMs?: number; maxBytes?: number }): Promise<ConsumedRecord[]>;
  /** Commits the offset after each partition's highest record; resolves with {partition: next offset}. */
  commit(records: Iterable<ConsumedRecord>): Promise<Record<number, bigint>>;
  commitOffsets(offsets: Record<number, bigint | number>): Promise<void>;
  reset(to: Position): Promise<Record<number, bigint>>;
  subscribe(options?: { start?: Position; maxRecordsPerMessage?: number; timeoutMs?: number }): Subscription;
  [Symbol.asyncIterator](): AsyncIterator<ConsumedRecord>;
}

/** The records of a Subscribe stream. */
export class Subscription implements AsyncIterable<ConsumedRecord> {
  cancel(): void;
  [Symbol.asyncIterator](): AsyncGenerator<ConsumedRecord, void, undefined>;
}

export interface TopicPartition {
  topic: string;
  partition: number;
}

export interface GroupConsumerConfig {
  /** Static membership: rejoining with it within the session timeout keeps the partitions. */
  instanceId?: string;
  clientId?: string;
  maxRecords?: number;
  maxWaitMs?: number;
  onAssigned?: (partitions: TopicPartition[]) => void;
  /** Called before the consumer commits and releases them. */
  onRevoked?: (partitions: TopicPartition[]) => void;
  /** Partitions lost without a release (fenced); the consumer rejoins. */
  onLost?: (partitions: TopicPartition[]) => void;
}

export interface SharedConsumerConfig {
  /** Any stable id of this worker (default: a random one). */
  memberId?: string;
  maxRecords?: number;
  maxWaitMs?: number;
}

/** A record handed out to a worker of a shared group, locked to it until `lockDeadlineNs`. */
export interface SharedDelivery {
  record: ConsumedRecord;
  /** 1 on the first hand-out. */
  deliveries: number;
  /** Unix ns. */
  lockDeadlineNs: bigint;
}

export interface SettleResult {
  partition: number;
  offset: bigint;
  /** 'done' | 'available' | 'extended' | 'dead_lettered'; empty when refused. */
  outcome: string;
  /** Why it was refused; empty when settled. */
  error: string;
}

/** A worker of a shared group: records locked to it one by one, settled in batches. */
export class SharedConsumer {
  constructor(client: Client, topic: string, group: string, config?: SharedConsumerConfig);
  readonly topic: string;
  readonly group: string;
  readonly memberId: string;
  maxRecords: number;
  maxWaitMs: number;
  /** Sends the pending settlements, then takes records. */
  poll(options?: { maxRecords?: number; maxWaitMs?: number }): Promise<SharedDelivery[]>;
  accept(d: SharedDelivery): void;
  release(d: SharedDelivery, delayMs?: number, reason?: string): void;
  reject(d: SharedDelivery, reason?: string): void;
  extend(d: SharedDelivery): void;
  /** One Settle with the pending settlements; each one's result. */
  flush(): Promise<SettleResult[]>;
}

export interface SharedStreamConfig {
  /** Any stable id of this worker (default: a random one). */
  memberId?: string;
  /** Records handed out on the stream and unsettled, at most (default 1000). */
  maxInFlight?: number;
  /** Records per pushed message at most (0: the broker's default). */
  maxRecords?: number;
}

/** A worker of a shared group on one SharedConsume stream: records pushed, settled on the stream. */
export class SharedStream {
  constructor(client: Client, topic: string, group: string, config?: SharedStreamConfig);
  readonly topic: string;
  readonly group: string;
  readonly memberId: string;
  /** The next records pushed; [] when none came within `timeoutMs` or the stream ended. */
  deliveries(timeoutMs?: number): Promise<SharedDelivery[]>;
  accept(d: SharedDelivery): void;
  release(d: SharedDelivery, delayMs?: number, reason?: string): void;
  reject(d: SharedDelivery, reason?: string): void;
  extend(d: SharedDelivery): void;
  /** Sends the queued settlements without waiting; the batch's id (null: nothing queued). */
  flush(): number | null;
  /** Sends the queued settlements; each one's result (durable). */
  settle(): Promise<SettleResult[]>;
  /** Records unsettled on the stream at most (0 pauses the hand-out). */
  setCredit(maxInFlight: number): void;
  /** Ends the stream; the records pushed and not read (still locked to the worker). */
  close(): Promise<SharedDelivery[]>;
  /** Drops the stream like a crashed worker. */
  abort(): void;
}

/** A member of a consumer group: polls only the partitions the server assigns it. */
export class GroupConsumer {
  static join(client: Client, group: string, topics: string[], config?: GroupConsumerConfig): Promise<GroupConsumer>;
  readonly group: string;
  readonly topics: string[];
  readonly memberId: string;
  /** A 64-bit number as a decimal string. */
  readonly memberEpoch: string;
  readonly assignment: TopicPartition[];
  maxRecords: number;
  maxWaitMs: number;
  poll(): Promise<ConsumedRecord[]>;
  commit(): Promise<void>;
  close(): Promise<void>;
}

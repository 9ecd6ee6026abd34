'use strict';
/** @module errors — the one error type of the client. */

const { status } = require('@grpc/grpc-js');

/** Names of gRPC status codes by number (google.rpc.Code). */
const CODE_NAMES = Object.fromEntries(Object.entries(status).map(([name, n]) => [n, name]));

/**
 * An error from the broker (or from talking to it).
 * `code` is the gRPC status number (compare with `grpc.status.INVALID_ARGUMENT`), `codeName` its
 * name, `message` the broker's explanation.
 */
class ObeliskError extends Error {
  /**
   * @param {number} code gRPC status code number.
   * @param {string} message What went wrong, meant for a person.
   */
  constructor(code, message, { notLeader = false, leader = null } = {}) {
    super(message);
    this.name = 'ObeliskError';
    this.code = code;
    this.codeName = CODE_NAMES[code] ?? 'UNKNOWN';
    /** replication (issue 17): the node is not the cluster leader (it stored nothing). */
    this.notLeader = notLeader;
    /** The leader's gRPC address (host:port) a not-leader error names, when known. */
    this.leader = leader;
  }

  /** Whether the call never reached a broker (no connection could be made). */
  neverSent() {
    const m = this.message.toLowerCase();
    return this.code === status.UNAVAILABLE && (m.includes('connect') || m.includes('connection refused'));
  }

  /** Wraps a grpc-js ServiceError (or any error) from a call. */
  static from(err) {
    if (err instanceof ObeliskError) return err;
    if (err && typeof err.code === 'number') {
      const md = err.metadata && typeof err.metadata.get === 'function' ? err.metadata : null;
      const leader = md?.get('obelisk-leader')?.[0];
      return new ObeliskError(err.code, err.details ?? err.message, {
        notLeader: (md?.get('obelisk-not-leader')?.length ?? 0) > 0,
        leader: leader === undefined ? null : String(leader),
      });
    }
    return new ObeliskError(status.UNKNOWN, String(err && err.message ? err.message : err));
  }

  toString() {
    return `ObeliskError ${this.codeName}: ${this.message}`;
  }
}

module.exports = { ObeliskError, CODE_NAMES };

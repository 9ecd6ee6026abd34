'use strict';
/**
 * Starts a real `obelisk serve` for tests: a free loopback port, a given data dir, readiness by
 * gRPC health check (bounded to ~10 s), and a clean SIGTERM stop.
 */

const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { setTimeout: delay } = require('node:timers/promises');
const { Client } = require('../src');

const REPO = path.resolve(__dirname, '..', '..', '..');

/** `$OBELISK_BIN`, else `<repo>/target/debug/obelisk`. */
function obeliskBin() {
  return process.env.OBELISK_BIN || path.join(REPO, 'target', 'debug', 'obelisk');
}

/** A port the OS just handed out on 127.0.0.1 (closed again; may race, so callers retry). */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** One `obelisk serve` process over `dataDir`, logging to `logPath`. */
class ObeliskServer {
  /** `extraArgs` go to `obelisk serve`; `ca`: the server has TLS, trust this CA (a path). */
  constructor(dataDir, logPath, { extraArgs = [], ca } = {}) {
    this.dataDir = dataDir;
    this.logPath = logPath;
    this.extraArgs = extraArgs;
    this.ca = ca;
    this.proc = null;
    this.addr = '';
  }

  /**
   * Starts on a fresh port (or on `addr`, e.g. the one it had before a restart) and waits until
   * healthy; retries (on another fresh port) if it exits early.
   */
  async start({ readyTimeoutMs = 10_000, attempts = 3, addr } = {}) {
    const bin = obeliskBin();
    if (!fs.existsSync(bin)) throw new Error(`${bin} not found: build it with \`cargo build --bin obelisk\` or set OBELISK_BIN`);
    for (let i = 0; i < attempts; i++) {
      this.addr = (i === 0 && addr) || `127.0.0.1:${await freePort()}`;
      const log = fs.openSync(this.logPath, 'a');
      this.proc = spawn(bin, ['serve', '--data-dir', this.dataDir, '--grpc-addr', this.addr, '--tcp-addr', 'off', '--http-addr', 'off', ...this.extraArgs],
        { stdio: ['ignore', log, log] });
      fs.closeSync(log);
      this.exited = new Promise((resolve) => this.proc.once('exit', (code, signal) => resolve(code ?? signal)));
      if (await this._waitReady(readyTimeoutMs)) return this;
      await this.stop();
    }
    throw new Error(`obelisk did not become ready; log:\n${this.log()}`);
  }

  async _waitReady(timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    // Retry connecting fast: the default reconnect backoff starts at 1 s.
    const fastRetry = { 'grpc.initial_reconnect_backoff_ms': 50, 'grpc.max_reconnect_backoff_ms': 200 };
    const client = new Client(this.addr, { channelOptions: fastRetry, ...(this.ca ? { ca: this.ca } : {}) });
    try {
      while (Date.now() < deadline) {
        if (this.proc.exitCode !== null || this.proc.signalCode !== null) return false;
        try {
          if (await client.checkHealth(undefined, 500) === 'SERVING') return true;
        } catch {
          await delay(50); // not listening yet: retry within the bounded loop
        }
      }
      return false;
    } finally {
      client.close();
    }
  }

  /** SIGTERM and wait for the exit (SIGKILL and throw past `timeoutMs`); resolves with the exit code. */
  async stop(timeoutMs = 10_000) {
    if (!this.proc) return null;
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGTERM');
      const ac = new AbortController();
      const timer = delay(timeoutMs, 'timeout', { signal: ac.signal }).catch(() => 'aborted');
      const outcome = await Promise.race([this.exited, timer]);
      ac.abort();
      if (outcome === 'timeout') {
        this.proc.kill('SIGKILL');
        await this.exited;
        throw new Error(`obelisk did not stop within ${timeoutMs} ms of SIGTERM`);
      }
    }
    return this.exited;
  }

  /** SIGKILL, as a crash: nothing is flushed or closed cleanly. Resolves once it exited. */
  async kill9() {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGKILL');
      await this.exited;
    }
  }

  /** What the server printed so far. */
  log() {
    return fs.existsSync(this.logPath) ? fs.readFileSync(this.logPath, 'utf8') : '';
  }
}

module.exports = { ObeliskServer, REPO, freePort, obeliskBin };

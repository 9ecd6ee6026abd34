'use strict';
/**
 * A tiny TCP proxy for fault tests: forwards a loopback port to the broker, can swallow what the
 * broker sends on the connections open now (`hold`: an ack is stored but never arrives), and can
 * cut those connections (`cut`); connections made afterwards pass through.
 */

const net = require('node:net');

class CutProxy {
  /** Listens on a free loopback port (see `addr` once `start` resolved) and forwards to `target`. */
  constructor(target) {
    const i = target.lastIndexOf(':');
    this.target = { host: target.slice(0, i), port: Number(target.slice(i + 1)) };
    this.conns = new Set();
    this.server = net.createServer((down) => {
      const up = net.connect(this.target); // refused while the broker is down: both close
      const conn = { down, up, held: false };
      this.conns.add(conn);
      down.on('data', (d) => up.write(d));
      up.on('data', (d) => { if (!conn.held) down.write(d); });
      const close = () => { down.destroy(); up.destroy(); this.conns.delete(conn); };
      for (const s of [down, up]) { s.on('error', close); s.on('close', close); }
    });
    this.addr = '';
  }

  async start() {
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.addr = `127.0.0.1:${this.server.address().port}`;
    return this;
  }

  /** From now on, what the broker sends on the open connections is dropped. */
  hold() {
    for (const c of this.conns) c.held = true;
  }

  /** Closes every open connection (both sides); new connections pass through. */
  cut() {
    for (const c of [...this.conns]) { c.down.destroy(); c.up.destroy(); this.conns.delete(c); }
  }

  async close() {
    this.cut();
    await new Promise((resolve) => this.server.close(() => resolve()));
  }
}

module.exports = { CutProxy };

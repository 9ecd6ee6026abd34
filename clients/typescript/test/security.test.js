'use strict';
// The Node client over TLS with a bearer token, against a real broker with authentication on:
// certificates from `obelisk dev-certs`, the token from `obelisk token new`.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { status } = require('@grpc/grpc-js');
const { Client, ObeliskError } = require('../src');
const { ObeliskServer, obeliskBin } = require('../test-support/server');
const { pollUntil } = require('../test-support/fixtures');

let dir;
let server;
let token;
let ca;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'obelisk-ts-tls-'));
  const certs = path.join(dir, 'certs');
  execFileSync(obeliskBin(), ['dev-certs', '--out', certs]);
  const out = execFileSync(obeliskBin(), ['token', 'new', 'alice']).toString();
  token = out.match(/^token: (.+)$/m)[1];
  const line = out.match(/^token file line: (.+)$/m)[1];
  fs.writeFileSync(path.join(dir, 'tokens'), `${line}\n`);
  ca = path.join(certs, 'ca.pem');
  server = await new ObeliskServer(path.join(dir, 'data'), path.join(dir, 'server.log'), {
    extraArgs: ['--tls-cert', path.join(certs, 'server.pem'), '--tls-key', path.join(certs, 'server.key'),
      '--auth-token-file', path.join(dir, 'tokens'), '--super-users', 'alice'],
    ca,
  }).start();
});

after(async () => {
  const code = await server.stop();
  assert.equal(code, 0, `obelisk exited with ${code}; log:\n${server.log()}`);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('produce and consume over TLS with a token', async () => {
  const client = new Client(server.addr, { ca, token, timeoutMs: 10_000 });
  try {
    const producer = client.producer({ batchRecords: 10 });
    const acks = await Promise.all(Array.from({ length: 20 }, (_, i) => producer.send('secure', { value: `v${i}` })));
    await producer.close();
    assert.equal(acks.length, 20);
    const records = await pollUntil(client.consumer('secure', 'g'), 20);
    assert.deepEqual(records.map((r) => r.value.toString()).sort(), Array.from({ length: 20 }, (_, i) => `v${i}`).sort());
  } finally {
    client.close();
  }
});

test('without a valid token the broker answers UNAUTHENTICATED', async () => {
  for (const t of [undefined, 'wrong']) {
    const client = new Client(server.addr, { ca, ...(t ? { token: t } : {}), timeoutMs: 10_000 });
    try {
      await assert.rejects(client.listTopics(), (e) => e instanceof ObeliskError && e.code === status.UNAUTHENTICATED);
    } finally {
      client.close();
    }
  }
});

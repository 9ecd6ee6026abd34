'use strict';
// Cross-language: records produced by the Python client are read back identically by this one.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { consumeAndCompare } = require('../test-support/cross');
const { startBroker } = require('../test-support/fixtures');
const { REPO } = require('../test-support/server');

const python = process.env.PYTHON || 'python3';
const hasGrpc = spawnSync(python, ['-c', 'import grpc, google.protobuf'], { stdio: 'ignore' }).status === 0;
// In CI the runner installs grpcio, so a missing one is a failure there, not a skip.
const skip = !hasGrpc && !process.env.CI && `${python} with grpcio is not installed (clients/run-tests.sh installs it)`;

test('python-produced records are consumed identically', { skip }, async () => {
  assert.ok(hasGrpc, `${python} cannot import grpc`);
  const broker = await startBroker();
  try {
    const out = path.join(broker.dir, 'expected.json');
    const res = spawnSync(python, [path.join(REPO, 'clients/python/tests/cross_produce.py'),
      '--addr', broker.server.addr, '--topic', 'cross', '--out', out], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(res.status, 0, res.stdout + res.stderr);
    const { count, problems } = await consumeAndCompare(broker.client, out);
    assert.deepEqual(problems, []);
    assert.equal(count, 25);
  } finally {
    await broker.close();
  }
});

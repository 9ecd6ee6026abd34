'use strict';
// Cross-language check, consumer side (used by tests/cross_language.rs):
//   node scripts/cross_consume.js --addr 127.0.0.1:PORT --expected expected.json
// Exits 0 when every record matches, 1 (listing the differences) otherwise.

const { parseArgs } = require('node:util');
const { Client } = require('../src');
const { consumeAndCompare } = require('../test-support/cross');

async function main() {
  const { values } = parseArgs({ options: { addr: { type: 'string' }, expected: { type: 'string' } } });
  if (!values.addr || !values.expected) throw new Error('usage: cross_consume.js --addr HOST:PORT --expected FILE');
  const client = new Client(values.addr);
  try {
    const { count, problems } = await consumeAndCompare(client, values.expected);
    if (problems.length > 0) {
      console.error(`typescript consumer: ${problems.length} mismatches:\n  ${problems.join('\n  ')}`);
      process.exitCode = 1;
    } else {
      console.log(`typescript consumer: ${count} records match`);
    }
  } finally {
    client.close();
  }
}

main().catch((err) => {
  console.error(`typescript consumer failed: ${err}`);
  process.exitCode = 1;
});

'use strict';
// Quickstart: produce a few records, read them back as a consumer group, commit.
//
//   obelisk serve &                     # gRPC on 127.0.0.1:50051
//   node examples/quickstart.js [127.0.0.1:50051] [topic]

const { Client, ObeliskError } = require('../src');

async function main(addr = '127.0.0.1:50051', topic = 'quickstart') {
  const client = new Client(addr);
  try {
    await client.waitReady(5000);

    // Batched, pipelined produce: send() resolves with the ack once the record is durable.
    const producer = client.producer({ lingerMs: 5 });
    const acks = await Promise.all(Array.from({ length: 10 }, (_, i) =>
      producer.send(topic, { key: `user-${i % 3}`, value: `hello ${i}`, headers: { source: 'quickstart' } })));
    await producer.close();
    for (const a of acks) console.log(`stored at partition ${a.partition} offset ${a.offset}`);

    // Read as a group; commit after processing (at-least-once).
    const consumer = client.consumer(topic, 'quickstart-readers');
    const records = await consumer.poll({ maxWaitMs: 1000 });
    for (const r of records) console.log(`p${r.partition}@${r.offset} key=${r.key} value=${r.value}`);
    const committed = await consumer.commit(records);
    console.log('committed next offsets', committed);

    try {
      await client.consumer('bad/topic', 'quickstart-readers').poll({ maxWaitMs: 0 });
    } catch (err) {
      if (!(err instanceof ObeliskError)) throw err;
      console.log(`errors carry a code and a message: ${err.codeName}: ${err.message}`);
    }
  } finally {
    client.close();
  }
}

main(...process.argv.slice(2)).catch((err) => {
  console.error(String(err));
  process.exitCode = 1;
});

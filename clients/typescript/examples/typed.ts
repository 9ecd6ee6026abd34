// Type-level usage of the client: compiled by `npm run typecheck` (tsc --noEmit) to keep
// src/index.d.ts honest. Not run.
import { Ack, Client, ConsumedRecord, ObeliskError } from '../src';

export async function example(addr: string): Promise<bigint> {
  const client = new Client(addr, { timeoutMs: 5000 });
  const producer = client.producer({ batchRecords: 100, lingerMs: 2 });
  const ack: Ack = await producer.send('orders', { key: 'k', value: Buffer.from('v'), timestampNs: 1n });
  await producer.close();
  const plain = client.producer({ idempotent: false, requestTimeoutMs: 10_000, maxRetries: 3 });
  const id: string | null = plain.producerId;
  if (!plain.idempotent && id === null) await plain.close();
  const consumer = client.consumer('orders', 'g', { startIfNew: 'latest' });
  const records: ConsumedRecord[] = await consumer.poll({ maxWaitMs: 100 });
  const next: Record<number, bigint> = await consumer.commit(records);
  for await (const r of consumer.subscribe({ start: { offset: 0n }, timeoutMs: 1000 })) {
    if (r.headers['h']?.length) break;
  }
  try {
    await client.deleteTopic('bad/topic');
  } catch (e) {
    if (e instanceof ObeliskError && e.codeName === 'INVALID_ARGUMENT') console.log(e.code, e.message);
  }
  console.log(await client.checkHealth(), (await client.describeTopic('orders')).partitions[0].logEndOffset);
  client.close();
  return ack.offset + (next[ack.partition] ?? 0n);
}

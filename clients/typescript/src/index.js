'use strict';
/**
 * Obelisk client for Node.js: `@grpc/grpc-js` with `proto/` loaded at run time, plus a thin layer.
 *
 *   const { Client } = require('obelisk-client');
 *   const client = new Client('127.0.0.1:50051');
 *   const producer = client.producer();
 *   const ack = await producer.send('orders', { key: 'user-1', value: 'hello' });
 *   await producer.close();
 *   const consumer = client.consumer('orders', 'billing');
 *   await consumer.commit(await consumer.poll());
 *   const member = await client.groupConsumer('billing', ['orders']); // the server assigns partitions
 *   await member.poll(); await member.commit(); await member.close();
 *   client.close();
 */

const { Client, HEALTH_SERVICE } = require('./client');
const { Consumer, Subscription } = require('./consumer');
const { ObeliskError } = require('./errors');
const { GroupConsumer } = require('./group');
const { Producer } = require('./producer');
const { SharedConsumer, SharedStream } = require('./shared');

module.exports = {
  Client, Consumer, GroupConsumer, HEALTH_SERVICE, ObeliskError, Producer, SharedConsumer, SharedStream, Subscription,
};

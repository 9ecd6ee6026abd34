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
 *   client.close();
 */

const { Client, HEALTH_SERVICE } = require('./client');
const { Consumer, Subscription } = require('./consumer');
const { ObeliskError } = require('./errors');
const { Producer } = require('./producer');

module.exports = { Client, Consumer, HEALTH_SERVICE, ObeliskError, Producer, Subscription };

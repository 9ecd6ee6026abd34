// Browser tests of the web console: Debian's Chromium driven by playwright-core against a real
// `obelisk serve` on free ports with a temp data dir. Opens every page, produces a record and
// finds it by key, seeks by offset and time, resets a group and sees its lag change, deletes a
// topic, answers a 401 with a token, and saves a screenshot of each page to
// target/ui-screenshots/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = process.env.OBELISK_BIN || path.join(ROOT, 'target', 'debug', 'obelisk');
const SHOTS = path.join(ROOT, 'target', 'ui-screenshots');
const BASE_TS = Date.parse('2026-01-15T10:00:00Z');

let tmp;
let server;
let base;
let context;
let page;
const pageErrors = [];

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

async function rest(method, p, body) {
  const resp = await fetch(base + p, {
    method,
    signal: AbortSignal.timeout(30_000),
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  return { status: resp.status, json: text ? JSON.parse(text) : null };
}

async function startServer() {
  for (let attempt = 0; attempt < 3; attempt++) {
    const [grpc, tcp, http] = [await freePort(), await freePort(), await freePort()];
    const log = fs.openSync(path.join(tmp, 'server.log'), 'a');
    const proc = spawn(BIN, ['serve', '--data-dir', path.join(tmp, 'data'),
      '--grpc-addr', `127.0.0.1:${grpc}`, '--tcp-addr', `127.0.0.1:${tcp}`, '--http-addr', `127.0.0.1:${http}`],
    { stdio: ['ignore', log, log] });
    fs.closeSync(log);
    base = `http://127.0.0.1:${http}`;
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && proc.exitCode === null) {
      try {
        if ((await fetch(`${base}/health/ready`, { signal: AbortSignal.timeout(2000) })).status === 200) return proc;
      } catch { /* not listening yet */ }
      await delay(100);
    }
    proc.kill('SIGKILL');
  }
  throw new Error(`obelisk did not start:\n${fs.readFileSync(path.join(tmp, 'server.log'), 'utf8')}`);
}

async function shot(name) {
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

/** Opens a console page and waits for its content. */
async function open(p, selector) {
  await page.goto(base + p);
  await page.locator(selector).first().waitFor({ timeout: 20_000 });
}

// Every step is bounded: a hang fails the step (and `after` still stops the server).
const LIMIT = { timeout: 120_000 };
const step = (what) => process.stderr.write(`${new Date().toISOString()} ${what}\n`);

before(async () => {
  assert.ok(fs.existsSync(BIN), `${BIN} not found: cargo build --bin obelisk, or set OBELISK_BIN`);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'obelisk-ui-'));
  fs.mkdirSync(SHOTS, { recursive: true });
  step('starting obelisk');
  server = await startServer();
  step(`obelisk serving HTTP at ${base}`);
  // 40 records in partition 0 (one a minute from BASE_TS), 10 in each of 1 and 2.
  assert.equal((await rest('POST', '/topics', { name: 'orders', partitions: 3 })).status, 201);
  const records = [];
  for (let i = 0; i < 40; i++) {
    records.push({ key: `order-${i}`, value: JSON.stringify({ n: i }), partition: 0, headers: { source: 'seed' }, timestamp: new Date(BASE_TS + i * 60_000).toISOString() });
  }
  for (let i = 0; i < 20; i++) records.push({ key: `other-${i}`, value: `plain text ${i}`, partition: 1 + (i % 2) });
  assert.equal((await rest('POST', '/topics/orders/messages', { records })).status, 201);
  // A group that has read everything so far.
  assert.equal((await rest('POST', '/topics/orders/reset', { group: 'billing', to: 'latest' })).status, 200);

  step('launching chromium');
  const profile = fs.mkdtempSync(path.join(tmp, 'profile-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 800 },
    timezoneId: 'UTC',
    timeout: 90_000,
  });
  step('chromium up');
  context.setDefaultTimeout(20_000);
  page = context.pages()[0] || await context.newPage();
  page.on('pageerror', (err) => pageErrors.push(err.message));
}, LIMIT);

after(async () => {
  if (context) await context.close();
  if (server) {
    server.kill('SIGTERM');
    const exited = new Promise((resolve) => { if (server.exitCode !== null) resolve(); else server.once('exit', resolve); });
    if (await Promise.race([exited.then(() => true), delay(20_000).then(() => false)]) === false) server.kill('SIGKILL');
  }
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
}, LIMIT);

test('overview shows health, counts, connections and the rates chart', LIMIT, async () => {
  await open('/ui/', '[data-component="storage"]');
  await page.locator('#rates-chart svg').waitFor();
  assert.equal(await page.locator('[data-stat="topics"] .value').textContent(), '1');
  const protocols = await page.locator('table tbody tr td:first-child').allTextContents();
  assert.deepEqual(protocols.slice(0, 3).sort(), ['grpc', 'http', 'legacy']);
  // The chart gets a line once the sampler has two samples.
  await page.locator('#rates-chart path[data-series="produced"]').waitFor({ timeout: 30_000 });
  await shot('overview');
  // Phone width: nothing wider than the window (wide tables scroll inside their box).
  await page.setViewportSize({ width: 390, height: 844 });
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 390), 'overflows at 390 px');
  await shot('overview-phone');
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.emulateMedia({ colorScheme: 'dark' });
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(bg, 'rgb(15, 18, 24)', 'dark palette');
  await shot('overview-dark');
  await page.emulateMedia({ colorScheme: 'light' });
});

test('topics: list and create', LIMIT, async () => {
  await open('/ui/topics', 'tr[data-topic="orders"]');
  const cells = await page.locator('tr[data-topic="orders"] td').allTextContents();
  assert.equal(cells[1], '3');
  assert.equal(cells[2], '60');
  await page.locator('summary', { hasText: 'Create a topic' }).click();
  await page.fill('#create-topic input[name="name"]', 'scratch');
  await page.fill('#create-topic input[name="partitions"]', '2');
  await page.fill('#create-topic input[name="retention_hours"]', '24');
  await page.click('#create-topic button[type="submit"]');
  await page.locator('tr[data-topic="scratch"]').waitFor();
  const t = await rest('GET', '/topics/scratch');
  assert.equal(t.json.partition_count, 2);
  assert.equal(t.json.retention_ms, 86_400_000);
  await shot('topics');
});

test('a topic: partitions, paging, seek by offset and time, produce and find by key', LIMIT, async () => {
  await open('/ui/topics/orders', 'tr.record');
  assert.equal(await page.locator('#partitions tbody tr').count(), 3);
  await page.locator('#page-info', { hasText: 'offsets 0–39' }).waitFor();
  await page.selectOption('select[name="page"]', '20');
  await page.locator('#page-info', { hasText: 'offsets 0–19' }).waitFor();
  assert.equal(await page.locator('tr.record').count(), 20);
  await page.click('button:has-text("Forward ›")');
  await page.locator('tr.record[data-offset="39"]').waitFor();
  assert.equal(await page.locator('tr.record').first().getAttribute('data-offset'), '20');
  await page.click('button:has-text("‹ Back")');
  await page.locator('tr.record[data-offset="0"]').waitFor();
  // Seek by offset, then by time (one record a minute: 10:25 is offset 25).
  await page.fill('input[name="offset"]', '33');
  await page.click('button:has-text("Go")');
  await page.locator('#page-info', { hasText: 'offsets 33–39' }).waitFor();
  await page.fill('input[name="time"]', '2026-01-15T10:25:00');
  await page.click('button:has-text("Go to time")');
  await page.locator('#page-info', { hasText: 'offsets 25–39' }).waitFor();
  // Search the loaded range by header and by value.
  await page.fill('input[name="search"]', 'seed');
  await page.selectOption('select[name="field"]', 'header');
  assert.equal(await page.locator('tr.record').count(), 15);
  await page.fill('input[name="search"]', '"n":30');
  await page.selectOption('select[name="field"]', 'value');
  assert.equal(await page.locator('tr.record').count(), 1);

  // Produce a test record, then find it by key and show its value three ways.
  await page.locator('summary', { hasText: 'Produce a test record' }).click();
  await page.selectOption('#produce-form select[name="partition"]', '2');
  await page.fill('#produce-form input[name="key"]', 'needle-key');
  await page.fill('#produce-form textarea[name="value"]', '{"found":true,"n":7}');
  await page.fill('#produce-form input[name="headers"]', 'trace=abc');
  await page.click('#produce-form button[type="submit"]');
  await page.locator('.toast', { hasText: 'offset 10' }).waitFor();
  await page.selectOption('select[name="field"]', 'key');
  await page.fill('input[name="search"]', 'needle');
  await page.locator('tr.record', { hasText: 'needle-key' }).waitFor();
  assert.equal(await page.locator('tr.record').count(), 1);
  await page.click('tr.record');
  await page.selectOption('select[name="view"]', 'json');
  assert.match(await page.locator('#record-value').textContent(), /"found": true,\n {2}"n": 7/);
  await page.selectOption('select[name="view"]', 'hex');
  assert.match(await page.locator('#record-value').textContent(), /^00000000 {2}7b 22 66 6f 75 6e 64/);
  assert.match(await page.locator('#record-detail').textContent(), /trace=abc/);
  await shot('topic');
  await page.setViewportSize({ width: 390, height: 844 });
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 390), 'topic page overflows at 390 px');
  await shot('topic-phone');
  await page.setViewportSize({ width: 1280, height: 800 });
});

test('groups: lag, reset with confirmation, lag changes', LIMIT, async () => {
  await open('/ui/groups', 'tr[data-group="billing"]');
  // The record produced above is the group's lag.
  await page.locator('tr[data-group="billing"] td:last-child', { hasText: /^1$/ }).waitFor();
  await shot('groups');
  await page.click('a[href="/ui/groups/billing"]');
  await page.locator('[data-stat="total-lag"] .value', { hasText: /^1$/ }).waitFor();
  await page.locator('#lag-chart svg path').waitFor();
  await page.selectOption('#reset-form select[name="to"]', 'earliest');
  await page.click('#reset-form button[type="submit"]');
  const dialog = page.locator('#confirm-dialog');
  await dialog.waitFor();
  // Cancelling changes nothing.
  await dialog.locator('button[value="cancel"]').click();
  assert.equal((await rest('GET', '/groups/billing')).json.total_lag, 1);
  await page.click('#reset-form button[type="submit"]');
  await dialog.locator('button[value="ok"]').click();
  await page.locator('[data-stat="total-lag"] .value', { hasText: /^61$/ }).waitFor();
  assert.equal((await rest('GET', '/groups/billing')).json.total_lag, 61);
  // Back to offset 35: each partition is clamped to its end (40, 10, 11): lag 5.
  await page.selectOption('#reset-form select[name="to"]', 'offset');
  await page.fill('#reset-form input[name="offset"]', '35');
  await page.click('#reset-form button[type="submit"]');
  await dialog.locator('button[value="ok"]').click();
  await page.locator('[data-stat="total-lag"] .value', { hasText: /^5$/ }).waitFor();
  // To a time: partition 0 holds one record a minute from 10:00, so 10:30 is its offset 30; the
  // records of partitions 1 and 2 were stamped on arrival (later): they go back to 0. Lag 10+10+11.
  await page.selectOption('#reset-form select[name="to"]', 'time');
  await page.fill('#reset-form input[name="time"]', '2026-01-15T10:30:00');
  await page.click('#reset-form button[type="submit"]');
  await dialog.locator('button[value="ok"]').click();
  await page.locator('[data-stat="total-lag"] .value', { hasText: /^31$/ }).waitFor();
  const byTime = (await rest('GET', '/groups/billing')).json.partitions.map((p) => [p.partition, p.committed]).sort();
  assert.deepEqual(byTime, [[0, 30], [1, 0], [2, 0]]);
  await shot('group');
});

test('group members are shown when the group API reports them', LIMIT, async () => {
  // Members come from the group-membership work; stand in for its JSON shape here.
  const groupApi = (url) => url.pathname === '/groups/billing';
  await page.route(groupApi, async (route) => {
    const real = await route.fetch();
    const body = await real.json();
    body.members = [
      { member_id: 'consumer-1', client_id: 'svc-a', partitions: [{ topic: 'orders', partition: 0 }, { topic: 'orders', partition: 1 }] },
      { member_id: 'consumer-2', client_id: 'svc-b', partitions: [{ topic: 'orders', partition: 2 }] },
    ];
    await route.fulfill({ response: real, json: body });
  });
  await open('/ui/groups/billing', '#members table');
  const text = await page.locator('#members').textContent();
  assert.match(text, /Members \(2\)/);
  assert.match(text, /consumer-1.*orders\/0.*orders\/1.*client_id=svc-a/);
  assert.match(text, /consumer-2.*orders\/2/);
  await shot('group-members');
  await page.unroute(groupApi);
});

test('a shared group shows its in-flight records, locks and dead letters', LIMIT, async () => {
  assert.equal((await rest('POST', '/topics', { name: 'jobs', partitions: 1 })).status, 201);
  const records = ['a', 'b', 'c'].map((v) => ({ value: v, partition: 0 }));
  assert.equal((await rest('POST', '/topics/jobs/messages', { records })).status, 201);
  const got = await rest('POST', '/topics/jobs/poll', { group: 'workers', ack_mode: 'record', member_id: 'w1', max_records: 3 });
  assert.equal(got.status, 200, JSON.stringify(got.json));
  assert.equal(got.json.records.length, 3);
  // One to the dead-letter topic, one done, one still locked to w1.
  const acks = await rest('POST', '/topics/jobs/acks', {
    group: 'workers',
    member_id: 'w1',
    acks: [{ partition: 0, offset: 0, action: 'reject', reason: 'bad input' }, { partition: 0, offset: 1, action: 'accept' }],
  });
  assert.equal(acks.status, 200, JSON.stringify(acks.json));
  const d = (await rest('GET', '/groups/workers')).json;
  assert.equal(d.state, 'shared');
  assert.equal(d.shared.in_flight, 1);
  assert.equal(d.shared.locked, 1);
  assert.equal(d.shared.dead_letters, 1);
  await open('/ui/groups/workers', '#shared-state table');
  await page.locator('[data-stat="in-flight"] .value', { hasText: /^1$/ }).waitFor();
  await page.locator('[data-stat="locked"] .value', { hasText: /^1$/ }).waitFor();
  await page.locator('[data-stat="dead-letters"] .value', { hasText: /^1$/ }).waitFor();
  const text = await page.locator('#shared-state').textContent();
  assert.match(text, /workers\.dlq/);
  assert.match(text, /jobs/);
  await shot('shared-group');
});

test('delete a topic with confirmation', LIMIT, async () => {
  await open('/ui/topics', 'tr[data-topic="scratch"]');
  await page.click('tr[data-topic="scratch"] button.danger');
  const dialog = page.locator('#confirm-dialog');
  await dialog.waitFor();
  const ok = dialog.locator('button[value="ok"]');
  assert.equal(await ok.isDisabled(), true, 'needs the name typed');
  await dialog.locator('input[name="typed"]').fill('scratch');
  await ok.click();
  await page.locator('tr[data-topic="scratch"]').waitFor({ state: 'detached' });
  assert.equal((await rest('GET', '/topics/scratch')).status, 404);
  assert.equal((await rest('GET', '/topics/orders')).status, 200);
});

test('a 401 asks for a token, which every later call sends', LIMIT, async () => {
  // Stand in for a broker with authentication: the overview answers 401 without the token.
  await page.route('**/stats/overview', (route) => {
    if (route.request().headers().authorization === 'Bearer s3cret') return route.continue();
    return route.fulfill({ status: 401, contentType: 'application/json', body: '{"error":{"code":"unauthenticated","message":"a token is required"}}' });
  });
  await page.goto(`${base}/ui/`);
  const dialog = page.locator('#token-dialog');
  await dialog.waitFor();
  await dialog.locator('input[name="token"]').fill('s3cret');
  const later = page.waitForRequest('**/stats/history');
  await dialog.locator('button[value="ok"]').click();
  await page.locator('[data-component="storage"]').waitFor();
  assert.equal((await later).headers().authorization, 'Bearer s3cret');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('obelisk.console.token')), 's3cret');
  // Forgetting it asks again.
  await page.click('#signout');
  await dialog.waitFor();
  await dialog.locator('button[value="cancel"]').click();
  await page.unroute('**/stats/overview');
});

test('pages and unknown routes render without script errors', LIMIT, async () => {
  await open('/ui/nowhere', 'h1');
  assert.equal(await page.locator('h1').textContent(), 'Not found');
  await open('/ui/topics/missing-topic', 'h1');
  assert.match(await page.locator('main').textContent(), /does not exist|not found/i);
  assert.deepEqual(pageErrors, []);
});

// The web console in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core):
// sluice in front of `sluice sim` (tests/clients/lib), the page at the admin listener's
// /console/. It must show a backend turn from closed to open when the simulator answers 429,
// stream a chat completion in the playground (relayed to the public listener), and, with a
// non-loopback admin listener, refuse the console's API calls without the admin token.
// Screenshots go to build/test-artifacts/.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { BACKEND_KEY, CLIENT_KEY, azureBackend, startGateway } from '../../tests/clients/lib/gateway.mjs';
import { SLUICE_BIN, freePorts, startSim } from '../../tests/clients/lib/sim.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const ARTIFACTS = path.join(ROOT, 'build/test-artifacts');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const T = { timeout: 60000 };

let browser;
let sim;
const gateways = [];
const problems = [];

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
  sim = await startSim({
    endpoints: [
      { name: 'ep-a', api_keys: [BACKEND_KEY] },
      { name: 'ep-b', api_keys: [BACKEND_KEY] },
    ],
  });
});

after(async () => {
  if (browser) await browser.close();
  for (const gw of gateways) problems.push(...(await gw.stop()));
  if (sim) problems.push(...(await sim.stop()));
  assert.deepEqual(problems, [], problems.join('\n'));
});

// Route gpt-4o: backend a first (priority 1), b for the overflow.
async function gateway(extra = {}) {
  const gw = await startGateway({
    sim,
    backends: [azureBackend('a', sim.port('ep-a'), { deployment: 'gpt-4o' }), azureBackend('b', sim.port('ep-b'), { deployment: 'gpt-4o' })],
    routes: [{ name: 'gpt-4o', backends: [{ backend: 'a', priority: 1 }, { backend: 'b', priority: 2 }] }],
    extra,
  });
  gateways.push(gw);
  return gw;
}

async function newPage() {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) errors.push(m.text());
  });
  return { page, errors };
}

describe('console on a loopback admin listener', () => {
  let gw;
  before(async () => {
    await sim.reset();
    gw = await gateway();
  });

  test('serves the page, its files and a redirect; unknown files are 404 JSON', T, async () => {
    const base = `http://127.0.0.1:${gw.adminPort}`;
    const redirect = await fetch(`${base}/console`, { redirect: 'manual' });
    assert.equal(redirect.status, 301);
    assert.equal(redirect.headers.get('location'), '/console/');
    for (const [file, type] of [['', 'text/html'], ['app.js', 'text/javascript'], ['app.css', 'text/css']]) {
      const r = await fetch(`${base}/console/${file}`);
      assert.equal(r.status, 200, file);
      assert.ok(r.headers.get('content-type').startsWith(type), `${file}: ${r.headers.get('content-type')}`);
      assert.equal(r.headers.get('cache-control'), 'no-cache');
      const etag = r.headers.get('etag');
      assert.match(etag, /^"[0-9a-f]{20}"$/);
      const again = await fetch(`${base}/console/${file}`, { headers: { 'if-none-match': etag } });
      assert.equal(again.status, 304, file);
    }
    const missing = await fetch(`${base}/console/nope.js`);
    assert.equal(missing.status, 404);
    assert.equal((await missing.json()).error.code, 'NotFound');
    // A cross-site page cannot use the admin listener, even with a "simple" request.
    const cross = await fetch(`${base}/_sim/reset`, { method: 'POST', headers: { origin: 'http://evil.example' } });
    assert.equal(cross.status, 403);
  });

  test('a backend turns open on 429s; the playground streams a completion', T, async () => {
    const { page, errors } = await newPage();
    await page.goto(`http://127.0.0.1:${gw.adminPort}/console/`);
    const row = (name) => `[data-route="gpt-4o"] tr[data-backend="${name}"]`;
    await page.waitForSelector(`${row('a')}[data-state="closed"]`, { timeout: 10000 });
    await page.waitForSelector(`${row('b')}[data-state="closed"]`);

    // Backend a answers the next request 429 and asks for 30 s: sluice opens its circuit and
    // serves the playground's request from b.
    await sim.addFaults('ep-a', [{ kind: 'status', status: 429, retry_after_ms: 30000, count: 1, probability: 1 }]);

    await page.click('nav a[data-view="playground"]');
    await page.waitForSelector('#chat-route option[value="gpt-4o"]', { state: 'attached' });
    await page.selectOption('#chat-route', 'gpt-4o');
    await page.fill('#chat-key', CLIENT_KEY);
    await page.fill('#chat-prompt', 'Write two short sentences about rivers.');
    await page.fill('#chat-max', '40');
    await page.click('#chat-send');
    await page.waitForSelector('#chat-output[data-done="true"]', { timeout: 20000 });
    const text = await page.textContent('#chat-output');
    assert.ok(text.trim().length > 10, `streamed text: ${JSON.stringify(text)}`);
    const meta = await page.textContent('#chat-meta');
    assert.match(meta, /backend b/, meta);
    assert.match(meta, /40 tokens/, meta);
    await page.screenshot({ path: path.join(ARTIFACTS, 'console-playground.png'), fullPage: true });

    await page.click('nav a[data-view="backends"]');
    await page.waitForSelector(`${row('a')}[data-state="open"]`, { timeout: 5000 });
    const cells = await page.$$eval(`${row('a')} td`, (tds) => tds.map((td) => td.textContent));
    assert.equal(cells[2], 'open');
    assert.match(cells[3], /^\d+(\.\d)? s$/, `countdown: ${cells[3]}`);
    assert.match(cells[4], /^429/, `why: ${cells[4]}`);
    assert.equal(await page.getAttribute(`${row('b')}`, 'data-state'), 'closed');
    await page.screenshot({ path: path.join(ARTIFACTS, 'console.png'), fullPage: true });

    // The throttling chart has seen it too.
    await page.click('nav a[data-view="traffic"]');
    await page.waitForSelector('#chart-circuits svg path');
    await page.screenshot({ path: path.join(ARTIFACTS, 'console-traffic.png'), fullPage: true });
    // No usage.db in this configuration: the ledger part of the usage view says so.
    await page.click('nav a[data-view="usage"]');
    await page.waitForSelector('#usage-off');
    assert.match(await page.textContent('#usage-off'), /usage ledger is off/);
    await page.close();
    assert.deepEqual(errors, []);
  });

  test('the usage view charts tokens per client from /metrics', T, async (t) => {
    const metrics = await fetch(`http://127.0.0.1:${gw.adminPort}/metrics`);
    if (metrics.status === 404) return t.skip('this build serves no /metrics');
    assert.match(await metrics.text(), /sluice_tokens_total\{[^}]*client="node-sdk"/);
    const { page, errors } = await newPage();
    await page.goto(`http://127.0.0.1:${gw.adminPort}/console/#usage`);
    // Two readings 5 s apart make a rate; a request between them makes it non-zero.
    await page.waitForSelector('#chart-client-rate .empty');
    await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'api-key': CLIENT_KEY, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o', max_tokens: 20, messages: [{ role: 'user', content: 'Hi' }] }),
    }).then((r) => r.text());
    await page.waitForSelector('#chart-client-rate svg path', { timeout: 15000 });
    assert.match(await page.textContent('#chart-client-rate .legend'), /node-sdk/);
    await page.screenshot({ path: path.join(ARTIFACTS, 'console-usage.png'), fullPage: true });
    await page.close();
    assert.deepEqual(errors, []);
  });

  test('the playground shows the gateway\'s refusal of a wrong client key', T, async () => {
    const { page } = await newPage();
    await page.goto(`http://127.0.0.1:${gw.adminPort}/console/#playground`);
    await page.waitForSelector('#chat-route option[value="gpt-4o"]', { state: 'attached' });
    await page.fill('#chat-key', 'not-a-client-key');
    await page.click('#chat-send');
    await page.waitForSelector('#chat-output[data-done="error"]', { timeout: 10000 });
    assert.match(await page.textContent('#chat-output'), /^401: /);
    await page.close();
  });
});

describe('console on a non-loopback admin listener', () => {
  const TOKEN = `adm-${Math.random().toString(36).slice(2)}-${Date.now()}`;
  let gw;
  let base;
  before(async () => {
    const [port] = await freePorts(1);
    gw = await gateway({ admin_listen: `0.0.0.0:${port}`, admin_token: TOKEN });
    base = `http://127.0.0.1:${gw.adminPort}`;
  });

  test('check-config refuses it without admin_token', T, () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-console-'));
    const file = path.join(dir, 'open.yaml');
    writeFileSync(file, 'listen: ["127.0.0.1:18999"]\nadmin_listen: "0.0.0.0:18998"\n');
    const p = spawnSync(SLUICE_BIN, ['check-config', file], { encoding: 'utf8' });
    assert.equal(p.status, 1, p.stderr);
    assert.match(p.stderr, /:2:\d+: admin_listen: .*not a loopback address: set admin_token/);
    writeFileSync(file, 'listen: ["127.0.0.1:18999"]\nadmin_listen: "0.0.0.0:18998"\nadmin_token: short\n');
    const q = spawnSync(SLUICE_BIN, ['check-config', file], { encoding: 'utf8' });
    assert.equal(q.status, 1, q.stderr);
    assert.match(q.stderr, /admin_token: /);
  });

  test('API calls need the token: 401 without, 200 with', T, async () => {
    const auth = { authorization: `Bearer ${TOKEN}` };
    const calls = [
      ['/sluice/status', {}],
      ['/console/api/v1/models', { 'api-key': CLIENT_KEY }],
      ['/_sim/stats', {}],
    ];
    for (const [p, h] of calls) {
      const no = await fetch(base + p, { headers: h });
      assert.equal(no.status, 401, p);
      assert.equal((await no.json()).error.code, 'Unauthorized');
      const wrong = await fetch(base + p, { headers: { ...h, authorization: `Bearer ${TOKEN}x` } });
      assert.equal(wrong.status, 401, p);
    }
    assert.equal((await fetch(base + '/sluice/status', { headers: auth })).status, 200);
    const models = await fetch(base + '/console/api/v1/models', { headers: { ...auth, 'api-key': CLIENT_KEY } });
    assert.equal(models.status, 200);
    assert.deepEqual((await models.json()).data.map((m) => m.id), ['gpt-4o']);
    // The page itself and /healthz need none.
    assert.equal((await fetch(base + '/console/')).status, 200);
    assert.equal((await fetch(base + '/healthz')).status, 200);
  });

  test('the page asks for the token once, then shows the backends', T, async () => {
    const { page, errors } = await newPage();
    await page.goto(`${base}/console/`);
    await page.waitForSelector('#token-form:not([hidden])', { timeout: 10000 });
    await page.fill('#token-input', TOKEN);
    await page.click('#token-form button[type=submit]');
    await page.waitForSelector('[data-route="gpt-4o"] tr[data-backend="a"]', { timeout: 10000 });
    assert.equal(await page.evaluate(() => sessionStorage.getItem('sluice.adminToken')), TOKEN);
    await page.close();
    // 401s before the token was given are expected in the console log.
    assert.deepEqual(errors.filter((e) => !/401/.test(e)), []);
  });
});

// The official openai npm SDK when every backend of a route is throttled: sluice answers 429 with
// retry-after-ms and Retry-After set to the soonest time a backend reopens, and the SDK, which
// honours retry-after-ms, waits that long and then succeeds by itself.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { AzureOpenAI, RateLimitError } from 'openai';

import { BACKEND_KEY, CLIENT_KEY, MARKER, azureBackend, startGateway } from './lib/gateway.mjs';
import { API_VERSION, depStats, startSim } from './lib/sim.mjs';

const T = { timeout: 30000 };
const MESSAGES = [{ role: 'user', content: `Say hello. ${MARKER}` }];

let sim;
let gw;
before(async () => {
  sim = await startSim({
    endpoints: [
      { name: 'ep-a', api_keys: [BACKEND_KEY] },
      { name: 'ep-b', api_keys: [BACKEND_KEY] },
    ],
  });
  gw = await startGateway({
    sim,
    backends: [azureBackend('a', sim.port('ep-a'), { deployment: 'gpt-4o' }), azureBackend('b', sim.port('ep-b'), { deployment: 'gpt-4o' })],
    routes: [{ name: 'gpt-4o', backends: [{ backend: 'a' }, { backend: 'b' }] }],
  });
});
after(async () => {
  const problems = [];
  if (gw) problems.push(...(await gw.stop()));
  if (sim) problems.push(...(await sim.stop()));
  assert.deepEqual(problems, [], problems.join('\n'));
});

const client = (maxRetries) =>
  new AzureOpenAI({ endpoint: gw.url, apiKey: CLIENT_KEY, apiVersion: API_VERSION, deployment: 'gpt-4o', timeout: 10000, maxRetries });

const requests = async () => {
  const st = await sim.stats();
  return ['ep-a', 'ep-b'].map((ep) => depStats(st, ep, 'gpt-4o').requests);
};

// Both backends answer one 429 each, asking for 1 s.
const throttleBoth = async () => {
  for (const ep of ['ep-a', 'ep-b'])
    await sim.addFaults(ep, [{ kind: 'status', status: 429, retry_after_ms: 1000, count: 1, probability: 1 }]);
};

test('every backend throttled: the SDK sees 429 with the soonest reopen', T, async () => {
  await sim.reset();
  await throttleBoth();
  await assert.rejects(
    client(0).chat.completions.create({ model: 'gpt-4o', messages: MESSAGES, max_tokens: 16 }),
    (e) => {
      assert.ok(e instanceof RateLimitError, String(e));
      assert.equal(e.status, 429);
      const ms = Number(e.headers.get('retry-after-ms'));
      assert.ok(ms > 0 && ms <= 1000, `retry-after-ms ${e.headers.get('retry-after-ms')}`);
      assert.equal(e.headers.get('retry-after'), '1');
      return true;
    },
  );
  assert.deepEqual(await requests(), [1, 1]);
  // let both reopen before the next test
  await new Promise((r) => setTimeout(r, 1200));
});

test('every backend throttled: the SDK retries after retry-after-ms and succeeds', T, async () => {
  await sim.reset();
  await throttleBoth();
  const t0 = Date.now();
  const { data, response } = await client(2)
    .chat.completions.create({ model: 'gpt-4o', messages: MESSAGES, max_tokens: 16 })
    .withResponse();
  const took = Date.now() - t0;
  assert.equal(data.object, 'chat.completion');
  assert.ok(data.choices[0].message.content.length > 0);
  assert.ok(['a', 'b'].includes(response.headers.get('x-sluice-backend')));
  // it waited for the reopen (about 1 s), not for the SDK's own short back-off
  assert.ok(took >= 800, `succeeded after ${took} ms`);
  const [a, b] = await requests();
  assert.equal(a + b, 3, `two 429s, then one success: ${a} + ${b}`);
});

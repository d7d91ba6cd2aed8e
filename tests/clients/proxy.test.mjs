// The official openai npm SDK through sluice: the AzureOpenAI class (Azure paths, api-key,
// api-version) and the OpenAI class (the /openai/v1 and /v1 surfaces), unchanged except for
// the endpoint / baseURL and the key, against a gateway in front of `sluice sim`. The simulated
// endpoint accepts only the backend's key, so every success proves sluice swapped the keys.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import OpenAI, { AzureOpenAI } from 'openai';

import { BACKEND_KEY, CLIENT_KEY, MARKER, startGateway } from './lib/gateway.mjs';
import { API_VERSION, depStats, startSim } from './lib/sim.mjs';

const T = { timeout: 30000 };
const MESSAGES = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: `Say hello to the SDK. ${MARKER}` },
];

let sim;
let gw;
before(async () => {
  sim = await startSim({ endpoints: [{ name: 'ep', api_keys: [BACKEND_KEY] }] });
  gw = await startGateway({ sim });
});
after(async () => {
  const problems = [];
  if (gw) problems.push(...(await gw.stop()));
  if (sim) problems.push(...(await sim.stop()));
  assert.deepEqual(problems, [], problems.join('\n'));
});

const clients = {
  AzureOpenAI: (opts = {}) =>
    new AzureOpenAI({
      endpoint: gw.url,
      apiKey: CLIENT_KEY,
      apiVersion: API_VERSION,
      deployment: 'gpt-4o',
      timeout: 10000,
      maxRetries: 0,
      ...opts,
    }),
  'OpenAI /openai/v1': (opts = {}) =>
    new OpenAI({ baseURL: `${gw.url}/openai/v1`, apiKey: CLIENT_KEY, timeout: 10000, maxRetries: 0, ...opts }),
  'OpenAI /v1': (opts = {}) => new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: CLIENT_KEY, timeout: 10000, maxRetries: 0, ...opts }),
};

// The same SDK straight to the simulator, with the backend key: what the answers must equal.
const direct = () =>
  new AzureOpenAI({ endpoint: sim.url('ep'), apiKey: BACKEND_KEY, apiVersion: API_VERSION, deployment: 'gpt-4o', maxRetries: 0 });

const streamText = (chunks) => chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');

for (const [name, make] of Object.entries(clients)) {
  const azure = name === 'AzureOpenAI';

  describe(name, () => {
    test('chat completion', T, async () => {
      const before = depStats(await sim.stats(), 'ep', 'gpt-4o').requests;
      const { data, response } = await make()
        .chat.completions.create({ model: 'gpt-4o', messages: MESSAGES, max_tokens: 40 })
        .withResponse();
      assert.equal(data.object, 'chat.completion');
      assert.match(data.id, /^chatcmpl-/);
      assert.equal(data.model, 'gpt-4o-2024-08-06');
      assert.ok(data.choices[0].message.content.length > 0);
      const u = data.usage;
      assert.ok(u.completion_tokens > 0 && u.completion_tokens <= 40);
      assert.equal(response.headers.get('x-sluice-backend'), 'aoai-gpt-4o');
      assert.match(response.headers.get('x-request-id') ?? '', /^[0-9a-f]{32}$/);
      assert.ok(response.headers.get('apim-request-id'));
      if (azure) assert.equal(response.headers.get('x-ms-region'), 'eastus');
      const ref = await direct().chat.completions.create({ model: 'gpt-4o', messages: MESSAGES, max_tokens: 40 });
      assert.equal(data.choices[0].message.content, ref.choices[0].message.content);
      assert.deepEqual(data.usage, ref.usage);
      assert.equal(depStats(await sim.stats(), 'ep', 'gpt-4o').requests, before + 2);
    });

    test('streaming with include_usage', T, async () => {
      const body = { model: 'gpt-4o', messages: MESSAGES, max_tokens: 30, stream: true, stream_options: { include_usage: true } };
      const chunks = [];
      for await (const chunk of await make().chat.completions.create(body)) chunks.push(chunk);
      assert.ok(chunks.length >= 3, `only ${chunks.length} chunks`);
      const last = chunks.at(-1);
      assert.deepEqual(last.choices, []);
      assert.ok(last.usage, 'the last chunk has no usage');
      assert.equal(last.usage.total_tokens, last.usage.prompt_tokens + last.usage.completion_tokens);
      if (azure) {
        assert.deepEqual(chunks[0].choices, []);
        assert.ok(Array.isArray(chunks[0].prompt_filter_results));
      }
      const finishes = chunks.filter((c) => c.choices[0]?.finish_reason);
      assert.equal(finishes.length, 1);
      const ref = [];
      for await (const chunk of await direct().chat.completions.create(body)) ref.push(chunk);
      assert.equal(chunks.length, ref.length);
      assert.equal(streamText(chunks), streamText(ref));
      assert.deepEqual(last.usage, ref.at(-1).usage);
    });

    test('embeddings (SDK default: base64) decode to 1536 floats', T, async () => {
      const wire = [];
      const spy = async (url, init) => {
        const r = await fetch(url, init);
        wire.push({ url: String(url), sent: JSON.parse(init.body), got: await r.clone().json(), headers: r.headers });
        return r;
      };
      const client = make({ fetch: spy, ...(azure ? { deployment: 'text-embedding-3-small' } : {}) });
      const res = await client.embeddings.create({ model: 'text-embedding-3-small', input: ['hello', MARKER] });
      assert.equal(wire.length, 1);
      assert.equal(wire[0].sent.encoding_format, 'base64');
      assert.equal(typeof wire[0].got.data[0].embedding, 'string', 'not base64 on the wire');
      assert.equal(wire[0].headers.get('x-sluice-backend'), 'aoai-embed');
      assert.equal(res.data.length, 2);
      for (const d of res.data) {
        assert.ok(Array.isArray(d.embedding));
        assert.equal(d.embedding.length, 1536);
        assert.ok(d.embedding.every((x) => typeof x === 'number' && Number.isFinite(x)));
        const norm = d.embedding.reduce((s, x) => s + x * x, 0);
        assert.ok(Math.abs(norm - 1) < 1e-3, `norm ${norm}`);
      }
      const refEmb = await new AzureOpenAI({
        endpoint: sim.url('ep'),
        apiKey: BACKEND_KEY,
        apiVersion: API_VERSION,
        deployment: 'text-embedding-3-small',
      }).embeddings.create({ model: 'text-embedding-3-small', input: ['hello', MARKER] });
      assert.deepEqual(res.data.map((d) => d.embedding), refEmb.data.map((d) => d.embedding));
    });

    test('responses create and retrieve', T, async () => {
      const client = make();
      const r = await client.responses.create({ model: 'gpt-4o', input: `Hello, responses. ${MARKER}`, max_output_tokens: 500 });
      assert.match(r.id, /^resp_/);
      assert.equal(r.object, 'response');
      assert.equal(r.status, 'completed');
      assert.ok(r.output_text.length > 0);
      const got = await client.responses.retrieve(r.id);
      assert.equal(got.id, r.id);
      assert.equal(got.output_text, r.output_text);
    });

    test('assistants and threads round trip', T, async () => {
      const client = make();
      const a = await client.beta.assistants.create({ model: 'gpt-4o', name: 'helper', instructions: 'Be terse.' });
      assert.match(a.id, /^asst_/);
      assert.equal(a.name, 'helper');
      const gotA = await client.beta.assistants.retrieve(a.id);
      assert.equal(gotA.id, a.id);
      const t = await client.beta.threads.create();
      assert.match(t.id, /^thread_/);
      const gotT = await client.beta.threads.retrieve(t.id);
      assert.equal(gotT.id, t.id);
      const del = await client.beta.threads.delete(t.id);
      assert.equal(del.deleted, true);
      await assert.rejects(client.beta.threads.retrieve(t.id), (e) => e instanceof OpenAI.NotFoundError);
      assert.equal((await client.beta.assistants.delete(a.id)).deleted, true);
    });

    test('errors map to the SDK error classes', T, async () => {
      const bad = azure
        ? new AzureOpenAI({ endpoint: gw.url, apiKey: 'wrong', apiVersion: API_VERSION, deployment: 'gpt-4o', maxRetries: 0 })
        : new OpenAI({ baseURL: make().baseURL, apiKey: 'wrong', maxRetries: 0 });
      await assert.rejects(bad.chat.completions.create({ model: 'gpt-4o', messages: MESSAGES }), OpenAI.AuthenticationError);
      // the backend's key is not a client key either
      const sneaky = azure
        ? new AzureOpenAI({ endpoint: gw.url, apiKey: BACKEND_KEY, apiVersion: API_VERSION, deployment: 'gpt-4o', maxRetries: 0 })
        : new OpenAI({ baseURL: make().baseURL, apiKey: BACKEND_KEY, maxRetries: 0 });
      await assert.rejects(sneaky.chat.completions.create({ model: 'gpt-4o', messages: MESSAGES }), OpenAI.AuthenticationError);
      const unknown = azure ? make({ deployment: 'no-such-deployment' }) : make();
      await assert.rejects(
        unknown.chat.completions.create({ model: 'no-such-deployment', messages: MESSAGES }),
        (e) => e instanceof OpenAI.NotFoundError && e.code === 'DeploymentNotFound',
      );
      // the backend's own validation errors pass through
      await assert.rejects(
        make().chat.completions.create({ model: 'gpt-4o', messages: 'not a list' }),
        (e) => e instanceof OpenAI.BadRequestError,
      );
    });
  });
}

test('AzureOpenAI legacy completions', T, async () => {
  const client = clients.AzureOpenAI({ deployment: 'gpt-35-turbo-instruct' });
  const res = await client.completions.create({ model: 'gpt-35-turbo-instruct', prompt: 'Once upon a time', max_tokens: 5 });
  assert.equal(res.object, 'text_completion');
  assert.ok(res.usage.completion_tokens <= 5);
});

test('OpenAI models list: the routes', T, async () => {
  for (const make of [clients['OpenAI /openai/v1'], clients['OpenAI /v1']]) {
    const ids = [];
    for await (const m of make().models.list()) ids.push(m.id);
    assert.deepEqual(ids.sort(), gw.config.routes.map((r) => r.name).sort());
  }
});

test("the SDK's own retry on a 429 from the backend honours retry-after-ms", T, async () => {
  const client = clients.AzureOpenAI({ maxRetries: 2, deployment: 'gpt-4o-mini' });
  await sim.reset();
  await sim.addFaults('ep', [
    { kind: 'status', status: 429, retry_after_ms: 300, probability: 1.0, count: 1, deployment: 'gpt-4o-mini' },
  ]);
  const t0 = performance.now();
  const res = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: MESSAGES, max_tokens: 5 });
  const took = performance.now() - t0;
  assert.equal(res.object, 'chat.completion');
  assert.ok(took >= 280, `answered after ${took.toFixed(0)} ms, before the 300 ms retry-after`);
  const d = depStats(await sim.stats(), 'ep', 'gpt-4o-mini');
  assert.equal(d.requests, 2, JSON.stringify(d));
  assert.equal(d.by_status['429'], 1, JSON.stringify(d));
});

test('a stream the backend cuts is an error for the SDK, not a short success', T, async () => {
  await sim.reset();
  await sim.addFaults('ep', [{ kind: 'cut_stream', after: 3, probability: 1.0, count: 1, deployment: 'gpt-4o' }]);
  const run = async () => {
    const chunks = [];
    for await (const c of await clients.AzureOpenAI().chat.completions.create({ model: 'gpt-4o', messages: MESSAGES, max_tokens: 40, stream: true })) chunks.push(c);
    return chunks;
  };
  await assert.rejects(run());
});

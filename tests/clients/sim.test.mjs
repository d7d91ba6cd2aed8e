// The official openai npm SDK against `sluice sim`: the AzureOpenAI class (Azure paths,
// api-key, api-version) and the OpenAI class (the /openai/v1 and /v1 surfaces) must not be
// able to tell the simulator from the real service.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import OpenAI, { AzureOpenAI } from 'openai';

import { API_VERSION, depStats, startSim } from './lib/sim.mjs';

const KEY = 'sim-test-key';
const T = { timeout: 30000 };
const MESSAGES = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Say hello to the SDK.' },
];

let sim;
before(async () => {
  sim = await startSim({ endpoints: [{ name: 'ep', api_keys: [KEY] }, { name: 'other', region: 'westus' }] });
});
after(async () => {
  const problems = sim ? await sim.stop() : [];
  assert.deepEqual(problems, [], problems.join('\n'));
});

const clients = {
  AzureOpenAI: (opts = {}) =>
    new AzureOpenAI({
      endpoint: sim.url('ep'),
      apiKey: KEY,
      apiVersion: API_VERSION,
      deployment: 'gpt-4o',
      timeout: 10000,
      ...opts,
    }),
  'OpenAI /openai/v1': (opts = {}) =>
    new OpenAI({ baseURL: `${sim.url('ep')}/openai/v1`, apiKey: KEY, timeout: 10000, ...opts }),
  'OpenAI /v1': (opts = {}) => new OpenAI({ baseURL: `${sim.url('ep')}/v1`, apiKey: KEY, timeout: 10000, ...opts }),
};

for (const [name, make] of Object.entries(clients)) {
  const azure = name === 'AzureOpenAI';

  describe(name, () => {
    test('chat completion', T, async () => {
      const client = make();
      const { data, response } = await client.chat.completions
        .create({ model: 'gpt-4o', messages: MESSAGES, max_tokens: 40 })
        .withResponse();
      assert.equal(data.object, 'chat.completion');
      assert.match(data.id, /^chatcmpl-/);
      assert.equal(data.model, 'gpt-4o-2024-08-06');
      assert.equal(data.choices.length, 1);
      assert.equal(data.choices[0].message.role, 'assistant');
      assert.ok(data.choices[0].message.content.length > 0);
      assert.ok(['stop', 'length'].includes(data.choices[0].finish_reason));
      const u = data.usage;
      assert.ok(u.prompt_tokens > 0 && u.completion_tokens > 0 && u.completion_tokens <= 40);
      assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
      assert.ok(response.headers.get('x-request-id'));
      if (azure) {
        assert.equal(response.headers.get('x-ms-region'), 'eastus');
        assert.ok(response.headers.get('apim-request-id'));
      }
    });

    test('streaming with include_usage', T, async () => {
      const client = make();
      const run = async () => {
        const stream = await client.chat.completions.create({
          model: 'gpt-4o',
          messages: MESSAGES,
          max_tokens: 30,
          stream: true,
          stream_options: { include_usage: true },
        });
        const chunks = [];
        for await (const chunk of stream) chunks.push(chunk);
        return chunks;
      };
      const chunks = await run();
      assert.ok(chunks.length >= 3, `only ${chunks.length} chunks`);
      const last = chunks.at(-1);
      assert.deepEqual(last.choices, []);
      assert.ok(last.usage, 'the last chunk has no usage');
      assert.equal(last.usage.total_tokens, last.usage.prompt_tokens + last.usage.completion_tokens);
      assert.ok(last.usage.completion_tokens > 0 && last.usage.completion_tokens <= 30);
      if (azure) {
        assert.deepEqual(chunks[0].choices, []);
        assert.ok(Array.isArray(chunks[0].prompt_filter_results), 'no prompt_filter_results in the first chunk');
      }
      const text = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
      assert.ok(text.length > 0, 'no streamed text');
      const finishes = chunks.filter((c) => c.choices[0]?.finish_reason);
      assert.equal(finishes.length, 1);
      assert.ok(['stop', 'length'].includes(finishes[0].choices[0].finish_reason));
      // the same request again: the same text, the same usage
      const again = await run();
      assert.equal(again.map((c) => c.choices[0]?.delta?.content ?? '').join(''), text);
      assert.deepEqual(again.at(-1).usage, last.usage);
    });

    test('embeddings (SDK default: base64, decoded)', T, async () => {
      // see what went over the wire: the SDK asks for base64 and decodes it itself
      const wire = [];
      const spy = async (url, init) => {
        const r = await fetch(url, init);
        wire.push({ sent: JSON.parse(init.body), got: await r.clone().json() });
        return r;
      };
      const client = make({ fetch: spy, ...(azure ? { deployment: 'text-embedding-3-small' } : {}) });
      const res = await client.embeddings.create({ model: 'text-embedding-3-small', input: ['hello', 'world'] });
      assert.equal(wire.length, 1);
      assert.equal(wire[0].sent.encoding_format, 'base64');
      assert.equal(typeof wire[0].got.data[0].embedding, 'string', 'the simulator did not answer base64');
      assert.equal(res.data.length, 2);
      for (const d of res.data) {
        assert.ok(Array.isArray(d.embedding), `embedding is ${typeof d.embedding}`);
        assert.equal(d.embedding.length, 1536);
        assert.ok(d.embedding.every((x) => typeof x === 'number' && Number.isFinite(x)));
      }
      assert.notDeepEqual(res.data[0].embedding, res.data[1].embedding);
      assert.ok(res.usage.prompt_tokens > 0);
      // the same vector as encoding_format float (to float32 precision)
      const f = await client.embeddings.create({ model: 'text-embedding-3-small', input: 'hello', encoding_format: 'float' });
      const a = res.data[0].embedding;
      const b = f.data[0].embedding;
      assert.equal(b.length, 1536);
      for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= 1e-6 * Math.max(1, Math.abs(b[i])), `index ${i}: ${a[i]} vs ${b[i]}`);
    });

    test('responses create and retrieve', T, async () => {
      const client = make();
      const r = await client.responses.create({ model: 'gpt-4o', input: 'Hello, responses.' });
      assert.match(r.id, /^resp_/);
      assert.equal(r.object, 'response');
      assert.equal(r.status, 'completed');
      const cut = await client.responses.create({ model: 'gpt-4o', input: 'Hello, responses.', max_output_tokens: 16 });
      assert.equal(cut.status, 'incomplete');
      assert.equal(cut.incomplete_details?.reason, 'max_output_tokens');
      assert.equal(cut.usage.output_tokens, 16);
      assert.ok(r.output_text.length > 0, 'no output_text');
      assert.ok(r.usage.input_tokens > 0 && r.usage.output_tokens > 0);
      const got = await client.responses.retrieve(r.id);
      assert.equal(got.id, r.id);
      assert.equal(got.output_text, r.output_text);
      const next = await client.responses.create({ model: 'gpt-4o', input: 'And then?', previous_response_id: r.id });
      assert.equal(next.previous_response_id, r.id);
      // another endpoint has never seen it
      const otherClient = azure
        ? new AzureOpenAI({ endpoint: sim.url('other'), apiKey: 'x', apiVersion: API_VERSION, timeout: 10000, maxRetries: 0 })
        : new OpenAI({ baseURL: `${sim.url('other')}/openai/v1`, apiKey: 'x', timeout: 10000, maxRetries: 0 });
      await assert.rejects(otherClient.responses.retrieve(r.id), (e) => e.status === 404);
    });

    test('responses streaming', T, async () => {
      const client = make();
      const stream = await client.responses.create({ model: 'gpt-4o', input: 'Stream, please.', stream: true });
      const events = [];
      for await (const ev of stream) events.push(ev);
      const types = events.map((e) => e.type);
      assert.equal(types[0], 'response.created');
      assert.equal(types.at(-1), 'response.completed');
      const text = events.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join('');
      assert.ok(text.length > 0);
      const done = events.find((e) => e.type === 'response.output_text.done');
      assert.equal(done.text, text);
      const final = events.at(-1).response;
      assert.equal(final.status, 'completed');
      // the SDK's stream helper assembles the same final response
      const helper = client.responses.stream({ model: 'gpt-4o', input: 'Stream, please.' });
      const assembled = await helper.finalResponse();
      assert.equal(assembled.output_text, text);
      const got = await client.responses.retrieve(final.id);
      assert.equal(got.output_text, text);
    });

    test("the SDK's own retry on a 429 honours retry-after-ms", T, async () => {
      const client = make({ maxRetries: 2, ...(azure ? { deployment: 'gpt-4o-mini' } : {}) });
      await sim.reset();
      await sim.addFaults('ep', [
        { kind: 'status', status: 429, retry_after_ms: 300, probability: 1.0, count: 1, deployment: 'gpt-4o-mini' },
      ]);
      const t0 = performance.now();
      const res = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: MESSAGES, max_tokens: 5 });
      const took = performance.now() - t0;
      assert.equal(res.object, 'chat.completion');
      assert.ok(took >= 280, `answered after ${took.toFixed(0)} ms, before the 300 ms retry-after`);
      assert.ok(took < 5000, `took ${took.toFixed(0)} ms`);
      const d = depStats(await sim.stats(), 'ep', 'gpt-4o-mini');
      assert.equal(d.requests, 2, JSON.stringify(d));
      assert.equal((d.by_status ?? d.statuses)['429'], 1, JSON.stringify(d));
      assert.equal((d.by_status ?? d.statuses)['200'], 1, JSON.stringify(d));
    });

    test('errors map to the SDK error classes', T, async () => {
      const client = make({ maxRetries: 0 });
      const bad = azure
        ? new AzureOpenAI({ endpoint: sim.url('ep'), apiKey: 'wrong', apiVersion: API_VERSION, deployment: 'gpt-4o', maxRetries: 0 })
        : new OpenAI({ baseURL: `${sim.url('ep')}/openai/v1`, apiKey: 'wrong', maxRetries: 0 });
      await assert.rejects(bad.chat.completions.create({ model: 'gpt-4o', messages: MESSAGES }), OpenAI.AuthenticationError);
      const unknown = azure ? make({ deployment: 'no-such-deployment', maxRetries: 0 }) : client;
      await assert.rejects(
        unknown.chat.completions.create({ model: 'no-such-deployment', messages: MESSAGES }),
        (e) => e instanceof OpenAI.NotFoundError && e.code === 'DeploymentNotFound',
      );
      await assert.rejects(
        client.chat.completions.create({ model: 'gpt-4o', messages: 'not a list' }),
        (e) => e instanceof OpenAI.BadRequestError,
      );
    });
  });
}

test('AzureOpenAI legacy completions', T, async () => {
  const client = clients.AzureOpenAI({ deployment: 'gpt-35-turbo-instruct' });
  const res = await client.completions.create({ model: 'gpt-35-turbo-instruct', prompt: 'Once upon a time', max_tokens: 5 });
  assert.equal(res.object, 'text_completion');
  assert.equal(typeof res.choices[0].text, 'string');
  assert.ok(res.usage.completion_tokens <= 5);
});

test('OpenAI models list', T, async () => {
  const client = clients['OpenAI /openai/v1']();
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  for (const want of ['gpt-4o', 'gpt-4o-mini', 'gpt-35-turbo-instruct', 'text-embedding-3-small']) assert.ok(ids.includes(want), `${want} not in ${ids}`);
});

// The sluice web console: plain JavaScript, no dependencies, served by the admin listener.
// Everything it asks goes to the listener it came from (the page's Content-Security-Policy
// allows nothing else): /sluice/status each second, /metrics every 5 s, /sluice/usage every
// 30 s, and the playground's /console/api/v1/... (relayed to the public listener).
'use strict';

const TOKEN_KEY = 'sluice.adminToken';
const CLIENT_KEY = 'sluice.clientKey';
const STATUS_MS = 1000;
const METRICS_MS = 5000;
const USAGE_MS = 30000;
const HISTORY_MS = 10 * 60 * 1000; // charts show the last 10 minutes
const COLORS = ['#0b5cad', '#cf222e', '#1a7f37', '#bf8700', '#8250df', '#0a7ea4', '#d4590f', '#57606a'];

const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k);
  return e;
};
const fmt = (n) => (n === null || n === undefined || Number.isNaN(n) ? '–' : Number(n).toLocaleString('en-US', { maximumFractionDigits: 1 }));

// ---- admin API access ----------------------------------------------------------------------

class AuthNeeded extends Error {}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

async function api(path, opts = {}) {
  const headers = new Headers(opts.headers || {});
  const t = token();
  if (t) headers.set('Authorization', `Bearer ${t}`);
  const res = await fetch(path, { ...opts, headers, cache: 'no-store' });
  if (res.status === 401 && !path.startsWith('/console/api/')) {
    askToken(t ? 'the admin listener refused this token' : '');
    throw new AuthNeeded('admin token needed');
  }
  return res;
}

let tokenAsked = false;
function askToken(message) {
  $('token-error').textContent = message;
  if (tokenAsked) return;
  tokenAsked = true;
  $('token-form').hidden = false;
  $('token-input').focus();
}

function setupToken() {
  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $('token-input').value.trim());
    $('token-input').value = '';
    $('token-form').hidden = true;
    tokenAsked = false;
    $('forget-token').hidden = false;
    refreshAll();
  });
  $('forget-token').hidden = !token();
  $('forget-token').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $('forget-token').hidden = true;
  });
}

function setConn(ok, text) {
  const c = $('conn');
  c.textContent = text;
  c.classList.toggle('bad', !ok);
}

// ---- views ---------------------------------------------------------------------------------

function showView() {
  const want = (location.hash || '#backends').slice(1);
  let found = false;
  for (const s of document.querySelectorAll('main > section')) {
    s.hidden = s.dataset.view !== want;
    found ||= !s.hidden;
  }
  if (!found) document.querySelector('main > section').hidden = false;
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.view === want);
  if (want === 'usage') pollUsage();
  redrawCharts();
}

// ---- backends (/sluice/status) -------------------------------------------------------------

let clockSkew = 0; // server time minus ours, from the status' "time"
let lastStatus = null;
const samples = []; // {t, open, throttled, half, inflight}

function countdown(until) {
  if (!until) return '';
  const ms = Date.parse(until) - (Date.now() + clockSkew);
  if (!(ms > 0)) return 'now';
  return ms < 10000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`;
}

function throttled(b) {
  return b.state === 'open' && typeof b.reason === 'string' && b.reason.startsWith('429');
}

function renderStatus(st) {
  const byName = new Map(st.backends.map((b) => [b.name, b]));
  const box = $('routes');
  const routes = st.routes.map((r) => {
    const rows = r.backends.map((m) => {
      const b = byName.get(m.name) || { name: m.name, state: 'closed' };
      return el('tr', { 'data-backend': b.name, 'data-state': b.state },
        el('td', {}, el('strong', { text: b.name }), b.region ? el('span', { class: 'badge', text: ` ${b.region}` }) : null),
        el('td', { class: 'num', text: `${m.priority} / ${m.weight}` }),
        el('td', {}, el('span', { class: `state ${b.state}`, text: b.state })),
        el('td', { class: 'num countdown', 'data-until': b.until || '', title: b.until || '', text: countdown(b.until) }),
        el('td', { class: 'why', text: b.reason || '' }),
        el('td', { class: 'num', text: fmt(b.in_flight) }),
        el('td', { class: 'num ok', text: fmt(b.success) }),
        el('td', { class: 'num err', text: fmt(b.errors) }),
        el('td', { class: 'num thr', text: fmt(b.throttled) }),
        el('td', { class: 'num', text: b.ttfb_ms === null || b.ttfb_ms === undefined ? '–' : `${b.ttfb_ms} ms` }),
        el('td', { class: 'num', text: b.last_status ?? '–' }),
      );
    });
    const head = el('tr', {}, ...['backend', 'prio / weight', 'state', 'until', 'why', 'in flight', 'ok', 'err', '429', 'TTFB', 'last']
      .map((h, i) => el('th', { class: [1, 3, 5, 6, 7, 8, 9, 10].includes(i) ? 'num' : null, text: h })));
    return el('div', { class: 'route', 'data-route': r.name },
      el('h3', {}, r.name,
        el('span', { class: r.available ? 'badge' : 'badge down', text: r.available ? 'available' : 'nothing available' }),
        el('span', { class: 'sub', text: `${fmt(r.requests)} requests, ${fmt(r.retries)} retries` })),
      el('table', {}, el('thead', {}, head), el('tbody', {}, ...rows)));
  });
  box.replaceChildren(...(routes.length ? routes : [el('p', { class: 'empty', text: 'no routes configured' })]));
  $('status-time').textContent = `${st.ready ? 'ready' : 'not ready'} · ${new Date(Date.parse(st.time)).toLocaleTimeString()}`;
  updateRouteChoices(st.routes.map((r) => r.name));
}

function tickCountdowns() {
  for (const td of document.querySelectorAll('td.countdown')) td.textContent = countdown(td.dataset.until);
}

async function pollStatus() {
  try {
    const res = await api('/sluice/status');
    if (!res.ok) throw new Error(`/sluice/status answered ${res.status}`);
    const st = await res.json();
    clockSkew = Date.parse(st.time) - Date.now();
    lastStatus = st;
    renderStatus(st);
    const now = Date.now();
    samples.push({
      t: now,
      open: st.backends.filter((b) => b.state === 'open' && !throttled(b)).length,
      throttled: st.backends.filter(throttled).length,
      half: st.backends.filter((b) => b.state === 'half-open').length,
      inflight: st.backends.reduce((a, b) => a + (b.in_flight || 0), 0),
    });
    trim(samples, now);
    setConn(true, `live · ${st.backends.length} backends`);
    redrawCharts();
  } catch (e) {
    if (!(e instanceof AuthNeeded)) setConn(false, `no status: ${e.message}`);
    else setConn(false, 'admin token needed');
  }
}

function trim(arr, now) {
  while (arr.length && arr[0].t < now - HISTORY_MS) arr.shift();
}

// ---- /metrics: Prometheus text format --------------------------------------------------------

// [{name, labels: {k: v}, value}] from the exposition text; types: {family: type}.
function parseMetrics(text) {
  const out = [];
  const types = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    if (line.startsWith('#')) {
      const m = /^#\s+TYPE\s+(\S+)\s+(\S+)/.exec(line);
      if (m) types[m[1]] = m[2];
      continue;
    }
    let i = 0;
    while (i < line.length && !'{ \t'.includes(line[i])) i++;
    const name = line.slice(0, i);
    const labels = {};
    if (line[i] === '{') {
      i++;
      while (i < line.length && line[i] !== '}') {
        const eq = line.indexOf('=', i);
        if (eq < 0) break;
        const key = line.slice(i, eq).trim().replace(/^,/, '').trim();
        i = eq + 1;
        if (line[i] !== '"') break;
        i++;
        let v = '';
        while (i < line.length && line[i] !== '"') {
          if (line[i] === '\\' && i + 1 < line.length) {
            i++;
            v += line[i] === 'n' ? '\n' : line[i];
          } else v += line[i];
          i++;
        }
        i++; // closing quote
        labels[key] = v;
        while (i < line.length && (line[i] === ',' || line[i] === ' ')) i++;
      }
      i++; // closing brace
    }
    const value = Number(line.slice(i).trim().split(/\s+/)[0]);
    if (name && !Number.isNaN(value)) out.push({ name, labels, value });
  }
  return { samples: out, types };
}

const CLIENT_LABELS = ['client', 'sluice_client', 'client_name'];
const MODEL_LABELS = ['model', 'gen_ai_request_model', 'gen_ai_response_model', 'route'];
const TYPE_LABELS = ['type', 'token_type', 'gen_ai_token_type'];

// Total tokens so far per value of one of `labels`, from the token counters (or histogram
// sums) found in the exposition.
function tokensBy(parsed, labels) {
  const pick = (s) => labels.find((l) => l in s.labels);
  let cands = parsed.samples.filter((s) => /token/.test(s.name) && /(_total|_sum)$/.test(s.name) && pick(s));
  if (!cands.length) return null;
  // One family only: prefer a counter, then the first found.
  const family = (cands.find((s) => s.name.endsWith('_total')) || cands[0]).name;
  cands = cands.filter((s) => s.name === family);
  // By token type: a total when there is one, else prompt + completion (input + output); cached
  // and reasoning tokens are parts of those.
  const typeLabel = TYPE_LABELS.find((l) => cands.some((s) => l in s.labels));
  if (typeLabel) {
    const types = cands.some((s) => s.labels[typeLabel] === 'total') ? ['total'] : ['prompt', 'completion', 'input', 'output'];
    cands = cands.filter((s) => types.includes(s.labels[typeLabel]));
  }
  const sums = {};
  for (const s of cands) sums[s.labels[pick(s)]] = (sums[s.labels[pick(s)]] || 0) + s.value;
  return sums;
}

function sumOf(parsed, name) {
  const s = parsed.samples.filter((x) => x.name === name);
  return s.length ? s.reduce((a, x) => a + x.value, 0) : null;
}

// Rate series from successive cumulative readings: {key: [{t, v}]}.
class Rates {
  constructor() {
    this.prev = null;
    this.series = {};
  }
  add(t, totals) {
    if (totals && this.prev) {
      const dt = (t - this.prev.t) / 1000;
      for (const [k, v] of Object.entries(totals)) {
        const before = this.prev.totals[k] ?? 0;
        const d = v >= before ? v - before : v; // a reset counts from 0
        (this.series[k] ||= []).push({ t, v: dt > 0 ? d / dt : 0 });
      }
    }
    this.prev = totals ? { t, totals } : null;
    for (const arr of Object.values(this.series)) trim(arr, t);
  }
}

const clientRates = new Rates();
const modelRates = new Rates();
const spillRates = new Rates();
let metricsState = 'waiting'; // 'ok' | 'absent' | 'no-tokens'

async function pollMetrics() {
  try {
    const res = await api('/metrics');
    const now = Date.now();
    if (res.status === 404) {
      metricsState = 'absent';
      return;
    }
    if (!res.ok) throw new Error(`/metrics answered ${res.status}`);
    const parsed = parseMetrics(await res.text());
    const byClient = tokensBy(parsed, CLIENT_LABELS);
    metricsState = byClient ? 'ok' : 'no-tokens';
    clientRates.add(now, byClient);
    modelRates.add(now, tokensBy(parsed, MODEL_LABELS));
    const spill = sumOf(parsed, 'sluice_spillover_total');
    spillRates.add(now, spill === null ? null : { 'spill-over': spill });
  } catch (e) {
    if (!(e instanceof AuthNeeded)) metricsState = 'absent';
  } finally {
    redrawCharts();
  }
}

// ---- /sluice/usage -------------------------------------------------------------------------

// Rows of a usage report as [{key, tokens, requests}], whatever the report's exact shape.
function usageRows(j, by) {
  const rows = Array.isArray(j) ? j : j.rows || j.groups || j.data || j.items || [];
  const num = (x) => (typeof x === 'number' ? x : typeof x === 'object' && x ? x.total ?? null : null);
  return rows.map((r) => ({
    key: String(r[by] ?? r.key ?? r.group ?? r.name ?? '?'),
    tokens: num(r.total_tokens) ?? num(r.tokens) ?? (r.prompt_tokens || 0) + (r.completion_tokens || 0),
    requests: r.requests ?? null,
  }));
}

async function pollUsage() {
  const box = $('usage-ledger');
  const figs = [];
  for (const by of ['client', 'model', 'day']) {
    let res;
    try {
      res = await api(`/sluice/usage?by=${by}`);
    } catch (e) {
      return;
    }
    if (res.status === 404) {
      box.replaceChildren(el('p', { class: 'empty', id: 'usage-off', text: 'usage ledger is off: set usage.db in the configuration to record usage' }));
      return;
    }
    if (!res.ok) {
      figs.push(el('p', { class: 'empty', text: `/sluice/usage?by=${by} answered ${res.status}` }));
      continue;
    }
    const rows = usageRows(await res.json(), by);
    const div = el('div', { class: 'chart' });
    figs.push(el('figure', {}, el('figcaption', { text: `tokens by ${by}` }), div));
    barChart(div, rows.map((r) => ({ label: r.key, value: r.tokens })), by === 'day');
  }
  box.replaceChildren(...figs);
}

// ---- charts: inline SVG ---------------------------------------------------------------------

const SVG = 'http://www.w3.org/2000/svg';
const svg = (tag, attrs = {}) => {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
};

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((m) => m >= v);
}

// series: [{name, points: [{t, v}]}] over the last HISTORY_MS.
function lineChart(box, series, emptyText) {
  const W = 520, H = 170, L = 44, R = 8, T = 8, B = 20;
  const now = Date.now();
  const t0 = now - HISTORY_MS;
  const pts = series.flatMap((s) => s.points);
  if (!pts.length) {
    box.replaceChildren(el('p', { class: 'empty', text: emptyText }));
    return;
  }
  const max = niceMax(Math.max(...pts.map((p) => p.v)));
  const x = (t) => L + ((t - t0) / HISTORY_MS) * (W - L - R);
  const y = (v) => T + (1 - v / max) * (H - T - B);
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img' });
  for (const f of [0, 0.5, 1]) {
    root.append(svg('line', { class: 'axis', x1: L, x2: W - R, y1: y(max * f), y2: y(max * f) }));
    const label = svg('text', { x: L - 4, y: y(max * f) + 3, 'text-anchor': 'end' });
    label.textContent = fmt(max * f);
    root.append(label);
  }
  for (const [i, m] of [[0, '−10 min'], [0.5, '−5 min'], [1, 'now']]) {
    const label = svg('text', { x: L + i * (W - L - R), y: H - 5, 'text-anchor': i === 0 ? 'start' : i === 1 ? 'end' : 'middle' });
    label.textContent = m;
    root.append(label);
  }
  const legend = el('div', { class: 'legend' });
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const d = s.points.map((p, j) => `${j ? 'L' : 'M'}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join('');
    if (d) root.append(svg('path', { d, fill: 'none', stroke: color, 'stroke-width': 1.8 }));
    const last = s.points.length ? s.points[s.points.length - 1].v : null;
    const sw = el('i');
    sw.style.background = color;
    legend.append(el('span', {}, sw, `${s.name} ${last === null ? '' : fmt(last)}`));
  });
  box.replaceChildren(root, legend);
}

function barChart(box, items, keepOrder) {
  if (!items.length) {
    box.replaceChildren(el('p', { class: 'empty', text: 'nothing recorded yet' }));
    return;
  }
  const list = keepOrder ? items : [...items].sort((a, b) => b.value - a.value);
  const shown = list.slice(0, 12);
  const W = 520, row = 20, L = 130, R = 70;
  const max = niceMax(Math.max(...shown.map((i) => i.value)));
  const root = svg('svg', { viewBox: `0 0 ${W} ${shown.length * row + 4}`, role: 'img' });
  shown.forEach((it, i) => {
    const label = svg('text', { x: L - 6, y: i * row + 14, 'text-anchor': 'end' });
    label.textContent = it.label.length > 20 ? `${it.label.slice(0, 19)}…` : it.label;
    const w = Math.max(1, (it.value / max) * (W - L - R));
    const bar = svg('rect', { x: L, y: i * row + 4, width: w.toFixed(1), height: row - 6, fill: COLORS[i % COLORS.length], rx: 2 });
    const val = svg('text', { x: L + w + 4, y: i * row + 14 });
    val.textContent = fmt(it.value);
    root.append(label, bar, val);
  });
  box.replaceChildren(root);
}

function toSeries(rates) {
  return Object.entries(rates.series).map(([name, points]) => ({ name, points }));
}

function redrawCharts() {
  const view = (location.hash || '#backends').slice(1);
  if (view === 'usage') {
    const why = metricsState === 'absent' ? 'no /metrics on this gateway yet' : metricsState === 'no-tokens' ? 'no per-client token counters in /metrics' : 'waiting for two samples…';
    lineChart($('chart-client-rate'), toSeries(clientRates), why);
    lineChart($('chart-model-rate'), toSeries(modelRates), why.replace('per-client', 'per-model'));
  } else if (view === 'traffic') {
    const s = (k) => samples.map((p) => ({ t: p.t, v: p[k] }));
    lineChart($('chart-circuits'), [
      { name: 'throttled (429)', points: s('throttled') },
      { name: 'open (failing)', points: s('open') },
      { name: 'half-open', points: s('half') },
    ], 'waiting for status…');
    lineChart($('chart-inflight'), [{ name: 'in flight', points: s('inflight') }], 'waiting for status…');
    lineChart($('chart-spill'), toSeries(spillRates), metricsState === 'absent' ? 'no /metrics on this gateway yet' : 'no sluice_spillover_total in /metrics yet');
  }
}

// ---- chat playground -----------------------------------------------------------------------

function updateRouteChoices(names) {
  const sel = $('chat-route');
  const have = [...sel.options].map((o) => o.value);
  if (have.join('\n') === names.join('\n')) return;
  const keep = sel.value;
  sel.replaceChildren(...names.map((n) => el('option', { value: n, text: n })));
  if (names.includes(keep)) sel.value = keep;
}

let chatAbort = null;

// Feed SSE text; calls onEvent(data) for each complete "data:" event. Returns the unparsed rest.
function feedSse(buf, onEvent) {
  let idx;
  while ((idx = buf.search(/\r?\n\r?\n/)) >= 0) {
    const block = buf.slice(0, idx);
    buf = buf.slice(idx + (buf[idx] === '\r' ? 4 : 2));
    const data = block.split(/\r?\n/).filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, '')).join('\n');
    if (data) onEvent(data);
  }
  return buf;
}

async function sendChat(ev) {
  ev.preventDefault();
  const out = $('chat-output');
  const meta = $('chat-meta');
  const key = $('chat-key').value.trim();
  sessionStorage.setItem(CLIENT_KEY, key);
  out.textContent = '';
  out.classList.remove('failed');
  out.dataset.done = 'false';
  meta.textContent = 'sending…';
  $('chat-send').disabled = true;
  $('chat-stop').disabled = false;
  chatAbort = new AbortController();
  const t0 = performance.now();
  let first = null;
  let chunks = 0;
  let usage = null;
  try {
    const res = await api('/console/api/v1/chat/completions', {
      method: 'POST',
      signal: chatAbort.signal,
      headers: { 'api-key': key, 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({
        model: $('chat-route').value,
        stream: true,
        stream_options: { include_usage: true },
        max_tokens: Number($('chat-max').value) || 200,
        messages: [{ role: 'user', content: $('chat-prompt').value }],
      }),
    });
    const backend = res.headers.get('x-sluice-backend');
    if (!res.ok || !(res.headers.get('content-type') || '').includes('text/event-stream')) {
      const text = await res.text();
      let msg = text;
      try {
        msg = JSON.parse(text).error.message;
      } catch (e) {
        /* not JSON: as it is */
      }
      throw new Error(`${res.status}: ${msg}`);
    }
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf = feedSse(buf + dec.decode(value, { stream: true }), (data) => {
        if (data === '[DONE]') return;
        let j;
        try {
          j = JSON.parse(data);
        } catch (e) {
          return;
        }
        if (j.usage) usage = j.usage;
        const delta = j.choices && j.choices[0] && j.choices[0].delta;
        if (delta && delta.content) {
          if (first === null) first = performance.now() - t0;
          chunks++;
          out.textContent += delta.content;
        }
      });
      meta.textContent = `streaming from ${backend || 'a backend'}…`;
    }
    const total = performance.now() - t0;
    const tokens = usage ? usage.completion_tokens : chunks;
    meta.textContent = `${backend ? `backend ${backend} · ` : ''}first token ${first === null ? '–' : `${Math.round(first)} ms`} · ${fmt(tokens)} tokens in ${(total / 1000).toFixed(2)} s`;
    out.dataset.done = 'true';
  } catch (e) {
    if (e.name === 'AbortError') meta.textContent = 'stopped';
    else {
      out.classList.add('failed');
      out.textContent += (out.textContent ? '\n\n' : '') + e.message;
      meta.textContent = 'failed';
    }
    out.dataset.done = 'error';
  } finally {
    $('chat-send').disabled = false;
    $('chat-stop').disabled = true;
    chatAbort = null;
  }
}

function setupChat() {
  $('chat-key').value = sessionStorage.getItem(CLIENT_KEY) || '';
  $('chat-form').addEventListener('submit', sendChat);
  $('chat-stop').addEventListener('click', () => chatAbort && chatAbort.abort());
}

// ---- start ---------------------------------------------------------------------------------

function refreshAll() {
  pollStatus();
  pollMetrics();
  pollUsage();
}

function every(ms, fn) {
  let busy = false;
  setInterval(async () => {
    if (busy || document.hidden) return;
    busy = true;
    try {
      await fn();
    } finally {
      busy = false;
    }
  }, ms);
}

setupToken();
setupChat();
window.addEventListener('hashchange', showView);
showView();
refreshAll();
every(STATUS_MS, pollStatus);
every(METRICS_MS, pollMetrics);
every(USAGE_MS, () => ((location.hash || '#backends') === '#usage' ? pollUsage() : null));
setInterval(tickCountdowns, 250);

// Start `sluice sim` for the client tests: a generated configuration on free ports, readiness
// on the control API's /healthz, the control API (faults, stats, reset), and a bounded stop
// that insists on exit status 0 and a clean stderr (make test also runs an ASan build).
//
// The binary is $SLUICE_BIN, or ../../build/dev/sluice relative to this directory's parent.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const SLUICE_BIN = process.env.SLUICE_BIN || path.resolve(here, '../../../build/dev/sluice');
export const API_VERSION = '2024-10-21';

const SANITIZER = ['ERROR: AddressSanitizer', 'runtime error:', 'LeakSanitizer', 'ThreadSanitizer'];

/** n distinct free TCP ports on 127.0.0.1 (held together, then released). */
export async function freePorts(n) {
  const servers = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = net.createServer();
      await new Promise((resolve, reject) => {
        s.once('error', reject);
        s.listen(0, '127.0.0.1', resolve);
      });
      servers.push(s);
    }
    return servers.map((s) => s.address().port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

export const fast = { ttft: '1ms', tokens_per_second: 5000, jitter_percent: 0 };

export function defaultDeployments() {
  return [
    { name: 'gpt-4o', model: 'gpt-4o', version: '2024-08-06', kind: 'chat', ...fast },
    { name: 'gpt-4o-mini', model: 'gpt-4o-mini', version: '2024-07-18', kind: 'chat', ...fast },
    { name: 'gpt-35-turbo-instruct', model: 'gpt-35-turbo-instruct', version: '0914', kind: 'completions', ...fast },
    { name: 'text-embedding-3-small', model: 'text-embedding-3-small', version: '1', kind: 'embeddings', dimensions: 1536, ...fast },
  ];
}

// ---- a tiny YAML writer (block mappings and sequences, quoted strings) ----
function scalar(v) {
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (/^[0-9]+(ms|s|m|h|%)$/.test(v)) return v;
  return JSON.stringify(String(v));
}

export function toYaml(obj, indent = 0) {
  const pad = '  '.repeat(indent);
  const out = [];
  if (Array.isArray(obj)) {
    for (const x of obj) {
      if (x !== null && typeof x === 'object') {
        const body = toYaml(x, indent + 1).split('\n');
        out.push(`${pad}- ${body[0].trimStart()}`, ...body.slice(1));
      } else {
        out.push(`${pad}- ${scalar(x)}`);
      }
    }
  } else {
    for (const [k, v] of Object.entries(obj)) {
      if (v !== null && typeof v === 'object') {
        if (Array.isArray(v) && v.length === 0) out.push(`${pad}${k}: []`);
        else out.push(`${pad}${k}:`, toYaml(v, indent + 1));
      } else {
        out.push(`${pad}${k}: ${scalar(v)}`);
      }
    }
  }
  return out.join('\n');
}

async function httpJson(port, method, urlPath, body, timeoutMs = 5000) {
  const res = await fetch(`http://127.0.0.1:${port}${urlPath}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text };
}

/**
 * Start `sluice ...args` for a Sim or Gateway `child` (named `what` in errors) and wait until
 * probe() resolves to a response with status 200 (bounded by timeoutMs). Sets child.proc,
 * collects its stderr in child.stderr and sets child.exited (resolves to { code, signal }).
 */
export async function startChild(child, what, args, probe, { env, timeoutMs = 10000 } = {}) {
  child.proc = spawn(SLUICE_BIN, args, { stdio: ['ignore', 'ignore', 'pipe'], ...(env ? { env } : {}) });
  child.proc.stderr.setEncoding('utf8');
  child.proc.stderr.on('data', (d) => {
    child.stderr += d;
  });
  child.exited = new Promise((resolve) => child.proc.once('exit', (code, signal) => resolve({ code, signal })));
  const spawnError = new Promise((_, reject) => child.proc.once('error', reject));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.proc.exitCode !== null) throw new Error(`${what} exited with ${child.proc.exitCode}:\n${child.stderr}`);
    try {
      const r = await Promise.race([probe(), spawnError]);
      if (r.status === 200) return child;
    } catch (e) {
      if (e && e.code === 'ENOENT') throw new Error(`cannot run ${SLUICE_BIN} (build it, or set SLUICE_BIN)`);
    }
    if (Date.now() > deadline) throw new Error(`${what} not ready within ${timeoutMs} ms:\n${child.stderr}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Stop a child started by spawnChild(): SIGTERM, wait (bounded), and return the problems found
 * (empty when all is well): exit status, sanitizer reports, and extraProblems() (run after
 * the process has exited). Removes child.dir.
 */
export async function stopChild(child, what, timeoutMs = 10000, extraProblems = () => []) {
  const problems = [];
  if (!child.proc) return problems;
  if (child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill('SIGTERM');
  let timer;
  const res = await Promise.race([
    child.exited,
    new Promise((r) => {
      timer = setTimeout(() => r(null), timeoutMs);
    }),
  ]);
  clearTimeout(timer);
  if (res === null) {
    child.proc.kill('SIGKILL');
    await child.exited;
    problems.push(`${what} did not exit within ${timeoutMs} ms of SIGTERM`);
  } else if (res.code !== 0) {
    problems.push(`${what} exited with ${res.code ?? res.signal}`);
  }
  const bad = child.stderr.split('\n').filter((l) => SANITIZER.some((m) => l.includes(m)));
  if (bad.length) problems.push(`sanitizer reports:\n${child.stderr.slice(-8000)}`);
  problems.push(...extraProblems());
  if (problems.length) problems.push(`stderr (tail):\n${child.stderr.slice(-3000)}`);
  rmSync(child.dir, { recursive: true, force: true });
  return problems;
}

export class Sim {
  constructor(config, dir) {
    this.config = config;
    this.dir = dir;
    this.adminPort = Number(config.admin_listen.split(':').pop());
    this.ports = Object.fromEntries(config.simulator.endpoints.map((e) => [e.name, Number(e.listen.split(':').pop())]));
    this.stderr = '';
    this.proc = null;
  }

  port(name) {
    return name === undefined ? Object.values(this.ports)[0] : this.ports[name];
  }

  url(name) {
    return `http://127.0.0.1:${this.port(name)}`;
  }

  async start(timeoutMs = 10000) {
    const file = path.join(this.dir, 'sim.yaml');
    writeFileSync(file, toYaml(this.config) + '\n');
    return startChild(this, 'sluice sim', ['sim', '--config', file], () => httpJson(this.adminPort, 'GET', '/healthz', undefined, 1000), {
      timeoutMs,
    });
  }

  /** SIGTERM, wait (bounded), and return the problems found (empty when all is well). */
  async stop(timeoutMs = 10000) {
    return stopChild(this, 'sluice sim', timeoutMs);
  }

  // ---- the control API ----
  async stats() {
    const r = await httpJson(this.adminPort, 'GET', '/_sim/stats');
    if (r.status !== 200) throw new Error(`GET /_sim/stats: ${r.status} ${r.text}`);
    return r.json;
  }

  async addFaults(endpoint, faults) {
    const r = await httpJson(this.adminPort, 'POST', '/_sim/faults', { endpoint, faults });
    if (r.status < 200 || r.status > 299) throw new Error(`POST /_sim/faults: ${r.status} ${r.text}`);
    return r.json;
  }

  async reset() {
    const r = await httpJson(this.adminPort, 'POST', '/_sim/reset', {});
    if (r.status < 200 || r.status > 299) throw new Error(`POST /_sim/reset: ${r.status} ${r.text}`);
  }
}

// GET /_sim/stats: per endpoint, per deployment (docs/simulator.md). Lists of {name, ...} or
// objects keyed by name are both accepted, so that only these two functions know the shape.
function named(container, name) {
  if (Array.isArray(container)) return container.find((x) => x && x.name === name);
  return container ? container[name] : undefined;
}

export function depStats(stats, endpoint, deployment) {
  const ep = named(stats.endpoints ?? stats, endpoint);
  if (!ep) throw new Error(`no endpoint ${endpoint} in ${JSON.stringify(stats).slice(0, 2000)}`);
  const d = named(ep.deployments ?? ep, deployment);
  if (!d) throw new Error(`no deployment ${deployment} in ${JSON.stringify(ep).slice(0, 2000)}`);
  return d;
}

/**
 * Start a simulator. endpoints: [{name, region?, flavor?, api_keys?, deployments?, faults?}];
 * listen addresses are filled in with free ports.
 */
export async function startSim({ endpoints = [{ name: 'ep' }], seed = 1 } = {}) {
  const ports = await freePorts(endpoints.length + 2);
  const eps = endpoints.map((e, i) => ({
    name: e.name,
    listen: `127.0.0.1:${ports[i + 2]}`,
    region: e.region ?? 'eastus',
    flavor: e.flavor ?? 'azure',
    ...(e.api_keys ? { api_keys: e.api_keys } : {}),
    deployments: e.deployments ?? defaultDeployments(),
    ...(e.faults ? { faults: e.faults } : {}),
  }));
  const config = {
    listen: [`127.0.0.1:${ports[0]}`],
    admin_listen: `127.0.0.1:${ports[1]}`,
    workers: 1,
    simulator: { seed, endpoints: eps },
  };
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-clients-'));
  const sim = new Sim(config, dir);
  try {
    await sim.start();
  } catch (e) {
    await sim.stop();
    throw e;
  }
  return sim;
}

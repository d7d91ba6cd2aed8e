// Start `sluice serve` as a gateway in front of a `sluice sim` (lib/sim.mjs) for the client
// tests: a generated configuration on free ports, the backend key from the environment (the
// simulated endpoints accept only it), client keys stored hashed, readiness on /healthz, and a
// bounded stop that insists on exit status 0, a clean stderr (make test also runs an ASan
// build) and no secret in the logs.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { freePorts, startChild, stopChild, toYaml } from './sim.mjs';

const RUN = randomBytes(6).toString('hex');
export const BACKEND_KEY = `bk-${RUN}-backend-secret`;
export const CLIENT_KEY = `ck-${RUN}-client-one`;
export const MARKER = `PromptMarker${RUN}`;
const BACKEND_KEY_ENV = 'SLUICE_TEST_BACKEND_KEY';

export const hashKey = (key) => `sha256:${createHash('sha256').update(key).digest('hex')}`;

/** An Azure backend on a simulated endpoint; deployment defaults to the route's name. */
export function azureBackend(name, port, { deployment, model = 'gpt-4o', version = '2024-08-06', ...rest } = {}) {
  return {
    name,
    url: `http://127.0.0.1:${port}`,
    type: 'azure',
    api_key: `\${${BACKEND_KEY_ENV}}`,
    region: 'eastus',
    model,
    version,
    ...(deployment ? { deployment } : {}),
    connect_timeout: '2s',
    first_byte_timeout: '10s',
    idle_timeout: '10s',
    total_timeout: '30s',
    ...rest,
  };
}

/** The deployments of lib/sim.mjs's defaultDeployments(), each a route of its own. */
export function standardGateway(simPort) {
  const backends = [
    azureBackend('aoai-gpt-4o', simPort, { deployment: 'gpt-4o' }),
    azureBackend('aoai-mini', simPort, { model: 'gpt-4o-mini', version: '2024-07-18' }),
    azureBackend('aoai-instruct', simPort, { model: 'gpt-35-turbo-instruct', version: '0914' }),
    azureBackend('aoai-embed', simPort, { model: 'text-embedding-3-small', version: '1' }),
  ];
  const routes = [
    { name: 'gpt-4o', backend: 'aoai-gpt-4o' },
    { name: 'gpt-4o-mini', backend: 'aoai-mini' },
    { name: 'gpt-35-turbo-instruct', backend: 'aoai-instruct' },
    { name: 'text-embedding-3-small', backend: 'aoai-embed' },
  ];
  return { backends, routes };
}

export class Gateway {
  constructor(config, dir) {
    this.config = config;
    this.dir = dir;
    this.port = Number(config.listen[0].split(':').pop());
    this.adminPort = Number(config.admin_listen.split(':').pop());
    this.url = `http://127.0.0.1:${this.port}`;
    this.stderr = '';
    this.proc = null;
    this.allowedInLogs = new Set();
  }

  async start(timeoutMs = 10000) {
    const file = path.join(this.dir, 'gateway.yaml');
    writeFileSync(file, toYaml(this.config) + '\n');
    return startChild(this, 'sluice serve', ['serve', '--config', file], () => fetch(`${this.url}/healthz`, { signal: AbortSignal.timeout(1000) }), {
      env: { ...process.env, [BACKEND_KEY_ENV]: BACKEND_KEY },
      timeoutMs,
    });
  }

  /** The secrets found in the logs (names), except those allowed. */
  leaks() {
    const secrets = { 'backend key': BACKEND_KEY, 'client key': CLIENT_KEY, 'prompt marker': MARKER };
    return Object.entries(secrets)
      .filter(([name, s]) => this.stderr.includes(s) && !this.allowedInLogs.has(name))
      .map(([name]) => name);
  }

  /** SIGTERM, wait (bounded), and return the problems found (empty when all is well). */
  async stop(timeoutMs = 10000) {
    return stopChild(this, 'sluice serve', timeoutMs, () => {
      const leaked = this.leaks();
      return leaked.length ? [`the gateway's logs hold the ${leaked.join(', ')}`] : [];
    });
  }
}

/**
 * Start a gateway in front of sim's endpoint `endpoint`: by default standardGateway() and one
 * client with CLIENT_KEY. extra is merged into the top level of the configuration.
 */
export async function startGateway({ sim, endpoint = 'ep', backends, routes, clients, extra = {} } = {}) {
  const std = standardGateway(sim.port(endpoint));
  const [port, adminPort] = await freePorts(2);
  const config = {
    listen: [`127.0.0.1:${port}`],
    admin_listen: `127.0.0.1:${adminPort}`,
    workers: 1,
    log: { level: 'info', format: 'json', access: true },
    backends: backends ?? std.backends,
    routes: routes ?? std.routes,
    clients: clients ?? [{ name: 'node-sdk', keys: [hashKey(CLIENT_KEY)] }],
    backend_header: true,
    ...extra,
  };
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-gateway-'));
  const gw = new Gateway(config, dir);
  try {
    await gw.start();
  } catch (e) {
    await gw.stop();
    throw e;
  }
  return gw;
}

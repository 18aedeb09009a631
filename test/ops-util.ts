// Shared by the end-to-end tests: the orchestrator in-process with the worker it spawns (and clients of
// both); for the operations proofs (ops-*.e2e-spec.ts) and the dashboard, one with configured tokens and
// an HTTP listener on loopback; small requests; HTTP helpers.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { SearchRequest } from '../src/gen/noisesearch/search/v1/search';
import { Solver } from '../src/gen/noisesearch/worker/v1/worker';
import { AppConfig, loadConfig } from '../src/config/config';
import { api, searchClient } from '../src/cli/client';
import { startOrchestrator, Orchestrator } from '../src/main';
import { WorkerRpc } from '../src/worker/worker-rpc';
import { WorkerService } from '../src/worker/worker.service';

export const ADMIN = 'ops-admin-token-0123456789abcdef';
export const READ = 'ops-read-token-0123456789abcdef';
export const WRONG = 'ops-wrong-token-0123456789abcdef';

/** Nothing persists between test runs (jobs in an in-memory database). */
export const MEMORY = { db: ':memory:' } as const;

export const euler = (steps: number) => ({ solver: Solver.SOLVER_EULER, steps, guidanceScale: 1 });

/** The load test's request: best-of-2, Euler 2 steps, guidance 1 (4 search NFEs, final reuses the search). */
export function small(seed: number, partial: Partial<SearchRequest> = {}): SearchRequest {
  return SearchRequest.fromPartial({
    model: 'sit-fmnist',
    condition: { classLabel: seed % 10 },
    random: { n: 2 },
    searchSolver: euler(2),
    seed: String(seed),
    ...partial,
  } as SearchRequest);
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const p = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(p));
    });
  });
}

/** The orchestrator in-process on loopback (no HTTP), its spawned worker, and clients of both. */
export interface Local {
  orch: Orchestrator;
  rawClient: ReturnType<typeof searchClient>;
  client: ReturnType<typeof api>;
  /** A direct client of the spawned worker (for rebuilding results from their recipes). */
  worker: WorkerRpc;
  close(): Promise<void>;
}

export async function startLocal(overrides: Partial<AppConfig> = {}, env: NodeJS.ProcessEnv = process.env): Promise<Local> {
  const orch = await startOrchestrator(
    loadConfig(env, { grpcAddress: '127.0.0.1:0', httpPort: 0, workerAddresses: [], maxRunningJobs: 2, ...overrides }),
    { logger: ['error', 'warn'] },
  );
  const rawClient = searchClient(orch.grpcAddress);
  const worker = new WorkerRpc(orch.app.get(WorkerService).workers[0].rpc.address);
  return {
    orch, rawClient, client: api(rawClient), worker,
    async close() {
      rawClient.close();
      worker.close();
      await orch.close();
    },
  };
}

export async function startWithTokens(overrides: Partial<AppConfig> = {}): Promise<Orchestrator & { httpUrl: string }> {
  const httpPort = await freePort();
  const orch = await startOrchestrator(loadConfig({ ...process.env, NOISESEARCH_AUTH: 'on' }, {
    grpcAddress: '127.0.0.1:0',
    httpPort,
    httpHost: '127.0.0.1',
    tokens: [{ token: ADMIN, role: 'admin' }, { token: READ, role: 'read' }],
    ...MEMORY,
    ...overrides,
  }), { logger: ['error'] });
  return orch as Orchestrator & { httpUrl: string };
}

export async function http(url: string, opts: { token?: string; method?: string; cookie?: string } = {}) {
  const headers: Record<string, string> = {};
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  if (opts.cookie) headers.cookie = opts.cookie;
  const res = await fetch(url, { method: opts.method ?? 'GET', headers, redirect: 'manual' });
  const type = res.headers.get('content-type') ?? '';
  const body = type.includes('json') ? await res.json() : type.startsWith('image/') ? Buffer.from(await res.arrayBuffer()) : await res.text();
  return { status: res.status, body: body as any, headers: res.headers };
}

/** Writes a test's figures to out/ops/<name>.json (for docs/operations.md) and prints them. */
export function publish(name: string, figures: unknown): void {
  const dir = path.join(__dirname, '..', 'out', 'ops');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, `${name}.json`), `${JSON.stringify(figures, null, 2)}\n`);
  const short = Object.fromEntries(Object.entries(figures as Record<string, unknown>).filter(([k]) => k !== 'all'));
  process.stdout.write(`${name}: ${JSON.stringify(short)}\n`);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

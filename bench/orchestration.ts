// Orchestration overhead: the same search through the orchestrator's public gRPC API and as the
// same sequence of worker RPCs made directly, interleaved, several repetitions each.
// The direct sequence is recorded from a warm-up run through the orchestrator and replayed with
// the handles (and namespace) the worker hands out on replay, so both sides make identical calls.
//   npm run bench -- [--reps 5] [--algorithm random] [--n 16] [--steps 10]
import 'reflect-metadata';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { SearchRequest } from '../src/gen/noisesearch/search/v1/search';
import { Solver } from '../src/gen/noisesearch/worker/v1/worker';
import { api, searchClient } from '../src/cli/client';
import { loadConfig } from '../src/config/config';
import { startOrchestrator } from '../src/main';
import { WorkerService } from '../src/worker/worker.service';
import { WorkerMethod, WorkerRpc } from '../src/worker/worker-rpc';

interface Recorded { method: WorkerMethod; request: unknown; response: unknown }

/** Every `handle` string in `x`, in traversal order. */
function handles(x: unknown, out: string[] = []): string[] {
  if (Array.isArray(x)) x.forEach((v) => handles(v, out));
  else if (x && typeof x === 'object' && !Buffer.isBuffer(x)) {
    for (const [k, v] of Object.entries(x)) {
      if (k === 'handle' && typeof v === 'string') out.push(v);
      else handles(v, out);
    }
  }
  return out;
}

/** `x` with every string found in `map` replaced. */
function substitute<T>(x: T, map: Map<string, string>): T {
  if (typeof x === 'string') return (map.get(x) ?? x) as T;
  if (Array.isArray(x)) return x.map((v) => substitute(v, map)) as T;
  if (x && typeof x === 'object' && !Buffer.isBuffer(x)) {
    return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, substitute(v, map)])) as T;
  }
  return x;
}

async function replay(rpc: WorkerRpc, calls: Recorded[], namespace: string): Promise<void> {
  const map = new Map<string, string>();
  const recordedNs = (calls[0].request as { namespace: string }).namespace;
  map.set(recordedNs, namespace);
  for (const c of calls) {
    const res = await rpc.call(c.method, substitute(c.request, map) as never);
    const before = handles(c.response);
    const after = handles(res);
    if (before.length !== after.length) throw new Error(`replay diverged at ${c.method}`);
    before.forEach((h, i) => map.set(h, after[i]));
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      reps: { type: 'string', default: '5' },
      algorithm: { type: 'string', default: 'random' },
      n: { type: 'string', default: '16' },
      steps: { type: 'string', default: '10' },
    },
  });
  const reps = Number(values.reps);
  const solver = { solver: Solver.SOLVER_EULER, steps: Number(values.steps), guidanceScale: 1 };
  const algo = values.algorithm === 'zero-order'
    ? { zeroOrder: { n: Number(values.n), k: 4, acceptNonImproving: false } }
    : values.algorithm === 'paths' ? { paths: { n: Number(values.n), m: 2, backwardSteps: 0 } } : { random: { n: Number(values.n) } };
  const request = SearchRequest.fromPartial({ model: 'sit-fmnist', condition: { classLabel: 7 }, searchSolver: solver, seed: '1', ...algo } as SearchRequest);

  const orch = await startOrchestrator(loadConfig(process.env, { grpcAddress: '127.0.0.1:0', httpPort: 0 }), { logger: ['fatal', 'error', 'warn'] });
  const raw = searchClient(orch.grpcAddress);
  const client = api(raw);
  const pooled = orch.app.get(WorkerService).workers[0].rpc;
  const direct = new WorkerRpc(pooled.address, { ...pooled.options, retries: 0 });
  try {
    // Warm-up through the orchestrator, recording the worker RPCs it makes.
    const recorded: Recorded[] = [];
    const original = pooled.call.bind(pooled);
    pooled.call = (async (method: WorkerMethod, req: unknown, signal?: AbortSignal) => {
      const response = await original(method, req as never, signal);
      recorded.push({ method, request: req, response });
      return response;
    }) as WorkerRpc['call'];
    await client.search(request);
    pooled.call = original as WorkerRpc['call'];
    await replay(direct, recorded, 'bench-warmup');

    const orchMs: number[] = [];
    const directMs: number[] = [];
    const viaOrchestrator = async () => {
      const t = performance.now();
      const events = await client.search(request);
      orchMs.push(performance.now() - t);
      if (!events[events.length - 1].result) throw new Error('no result');
    };
    const viaDirect = async (i: number) => {
      const t = performance.now();
      await replay(direct, recorded, `bench-direct-${i}`);
      directMs.push(performance.now() - t);
    };
    // Interleaved, alternating which goes first so drift in machine load hits both alike.
    for (let i = 0; i < reps; i++) {
      if (i % 2 === 0) { await viaOrchestrator(); await viaDirect(i); } else { await viaDirect(i); await viaOrchestrator(); }
    }
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
    const ratio = sum(orchMs) / sum(directMs);
    process.stdout.write(`${JSON.stringify({
      request: SearchRequest.toJSON(request),
      workerCalls: recorded.map((c) => c.method),
      reps,
      orchestratorMs: orchMs.map((x) => +x.toFixed(1)),
      directMs: directMs.map((x) => +x.toFixed(1)),
      orchestratorMedianMs: +median(orchMs).toFixed(1),
      directMedianMs: +median(directMs).toFixed(1),
      ratio: +ratio.toFixed(4),
      ratioOfMedians: +(median(orchMs) / median(directMs)).toFixed(4),
      target: 1.05,
      withinTarget: ratio <= 1.05,
    }, null, 2)}\n`);
  } finally {
    raw.close();
    direct.close();
    await orch.close();
  }
}

main().catch((e) => {
  process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});

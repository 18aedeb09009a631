// Orchestration overhead: the same search through the orchestrator's public gRPC API and as the
// same sequence of worker RPCs made directly, interleaved, several repetitions each. And the share
// of a search's wall time (from the client) spent inside worker calls, with each step's actions sent
// as one Worker.Run call (fused) and as one RPC per action (unfused), interleaved (issue 10 part 4:
// target worker share >= 0.97 at N = 16).
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
import { GrpcWorkerPort } from '../src/worker/grpc-worker-port';
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
    // Worker share: time inside worker calls (as the orchestrator's client sees them) over the search's wall time.
    const run = GrpcWorkerPort.prototype.run;
    const share: Record<'fused' | 'unfused', { wallMs: number[]; workerMs: number[]; calls: number }> = {
      fused: { wallMs: [], workerMs: [], calls: 0 }, unfused: { wallMs: [], workerMs: [], calls: 0 },
    };
    const measured = async (mode: 'fused' | 'unfused') => {
      const proto = GrpcWorkerPort.prototype as unknown as { run?: unknown };
      if (mode === 'unfused') delete proto.run; else proto.run = run;
      let inWorker = 0;
      let calls = 0;
      pooled.call = (async (method: WorkerMethod, req: unknown, signal?: AbortSignal) => {
        const t0 = performance.now();
        try { return await original(method, req as never, signal); } finally { inWorker += performance.now() - t0; calls++; }
      }) as WorkerRpc['call'];
      const t = performance.now();
      const events = await client.search(request);
      const wall = performance.now() - t;
      pooled.call = original as WorkerRpc['call'];
      proto.run = run;
      if (!events[events.length - 1].result) throw new Error('no result');
      share[mode].wallMs.push(wall);
      share[mode].workerMs.push(inWorker);
      share[mode].calls = calls;
    };
    for (let i = 0; i < reps; i++) {
      if (i % 2 === 0) { await measured('fused'); await measured('unfused'); } else { await measured('unfused'); await measured('fused'); }
    }
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    const shareOf = (m: 'fused' | 'unfused') => +(sum(share[m].workerMs) / sum(share[m].wallMs)).toFixed(4);
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
      loadAverage: (await import('node:os')).loadavg().map((x) => +x.toFixed(2)),
      workerShare: {
        fused: shareOf('fused'), unfused: shareOf('unfused'),
        workerCalls: { fused: share.fused.calls, unfused: share.unfused.calls },
        fusedWallMs: share.fused.wallMs.map((x) => +x.toFixed(1)), unfusedWallMs: share.unfused.wallMs.map((x) => +x.toFixed(1)),
        target: 0.97, withinTarget: shareOf('fused') >= 0.97,
      },
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

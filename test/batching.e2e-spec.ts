// End to end (issue 9): the worker's rows of concurrent searches share micro-batches, and in the default
// `exact` mode a search's bytes do not depend on what else runs. The real orchestrator, the real worker it
// spawns, real gRPC; lean: Euler/Heun 2-3 steps, small N.
import { Result, SearchRequest } from '../src/gen/noisesearch/search/v1/search';
import { Reproducibility, Solver } from '../src/gen/noisesearch/worker/v1/worker';
import { WorkerRpc } from '../src/worker/worker-rpc';
import { api, searchClient } from '../src/cli/client';
import { loadConfig } from '../src/config/config';
import { startOrchestrator, Orchestrator } from '../src/main';
import { WorkerService } from '../src/worker/worker.service';

jest.setTimeout(240_000);

let orch: Orchestrator;
let channels: ReturnType<typeof searchClient>[];

const PROBE = SearchRequest.fromPartial({
  model: 'sit-fmnist', condition: { classLabel: 3 }, random: { n: 3 }, seed: '77',
  searchSolver: { solver: Solver.SOLVER_HEUN, steps: 3, guidanceScale: 1.5 },
  return: { png: true, rawTensor: true },
} as SearchRequest);

/** A random search request (algorithm, N, solver, guidance, class and seed drawn from `i`). Guidance 0 runs only
 * the unconditional pass (1 NFE per evaluation, as src/search/nfe.ts charges it): i = 2 and 6. */
const GUIDANCE = [1, 1.5, 0, 2.5];
function randomRequest(i: number): SearchRequest {
  const solver = i % 2 ? Solver.SOLVER_EULER : Solver.SOLVER_HEUN;
  const algo = i % 3 === 0 ? { zeroOrder: { n: 1 + (i % 2), k: 2, acceptNonImproving: false } } : { random: { n: 1 + (i % 4) } };
  return SearchRequest.fromPartial({
    model: 'sit-fmnist', condition: { classLabel: i % 10 }, seed: String(5000 + i),
    searchSolver: { solver, steps: 2 + (i % 2), guidanceScale: GUIDANCE[i % 4] }, ...algo,
    return: { rawTensor: true },
  } as SearchRequest);
}

async function run(c: number, req: SearchRequest): Promise<Result> {
  const events = await api(channels[c]).search(req);
  const r = events[events.length - 1].result;
  if (!r) throw new Error('no result');
  return r;
}

beforeAll(async () => {
  orch = await startOrchestrator(
    loadConfig(process.env, { grpcAddress: '127.0.0.1:0', httpPort: 0, workerAddresses: [], db: ':memory:' }),
    { logger: ['error', 'warn'] },
  );
  channels = Array.from({ length: 8 }, () => searchClient(orch.grpcAddress));
}, 180_000);

afterAll(async () => {
  for (const c of channels ?? []) c.close();
  await orch?.close();
});

function sameBytes(a: Result, b: Result): void {
  expect(a.outputs.length).toBe(b.outputs.length);
  a.outputs.forEach((o, i) => expect(Buffer.compare(Buffer.from(o.tensor!.rawData), Buffer.from(b.outputs[i].tensor!.rawData))).toBe(0));
}

it('a search alone and the same search beside 7 random searches give identical bytes (exact mode)', async () => {
  const alone = await run(0, PROBE);
  const zeroGuidance = [2, 6];
  expect(zeroGuidance.map((i) => GUIDANCE[i % 4])).toEqual([0, 0]);
  const zeroAlone: Result[] = [];
  for (const i of zeroGuidance) zeroAlone.push(await run(0, randomRequest(i)));
  const rpc: WorkerRpc = orch.app.get(WorkerService).workers[0].rpc;
  const described = await rpc.call('describe', {});
  expect(described.reproducibility).toBe(Reproducibility.REPRODUCIBILITY_EXACT);
  const [loaded, ...others] = await Promise.all([run(0, PROBE), ...Array.from({ length: 7 }, (_, i) => run(i + 1, randomRequest(i)))]);
  expect(others.every((r) => r.outputs.length > 0)).toBe(true);
  // Guidance 0 in the mix: its searches' bytes too are those they have alone, and it is charged one NFE a sample.
  zeroGuidance.forEach((i, k) => sameBytes(others[i], zeroAlone[k]));
  // i = 2: random N = 3, Heun 2 steps (3 evaluations) at 1 NFE each; the final solve reuses the search's
  expect(zeroAlone[0].accounting!.searchNfes).toBe('9');
  expect(loaded.outputs.length).toBe(alone.outputs.length);
  loaded.outputs.forEach((o, i) => {
    expect(Buffer.compare(Buffer.from(o.png), Buffer.from(alone.outputs[i].png))).toBe(0);
    expect(Buffer.compare(Buffer.from(o.tensor!.rawData), Buffer.from(alone.outputs[i].tensor!.rawData))).toBe(0);
    const d = o.recipe!.denoise!;
    expect(d.batching!.reproducibility).toBe(Reproducibility.REPRODUCIBILITY_EXACT);
    expect(d.batching!.rows).toEqual([described.models[0].microBatch]);
  });
  // Nothing is left waiting in the worker's schedulers once every search has its result.
  expect(Number((await rpc.call('describe', {})).queuedRows)).toBe(0);
});

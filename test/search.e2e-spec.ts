// End to end: the real Nest app (public gRPC API) in front of the real Python worker it spawns.
// One worker and one app for the whole file; small settings (Euler 4-6 steps, guidance 1, small N).
import * as grpc from '@grpc/grpc-js';
import {
  Job, JobState, Result, SearchEvent, SearchRequest,
} from '../src/gen/noisesearch/search/v1/search';
import { Solver } from '../src/gen/noisesearch/worker/v1/worker';
import { WorkerRpc } from '../src/worker/worker-rpc';
import { api, kindOf, searchClient } from '../src/cli/client';
import { loadConfig } from '../src/config/config';
import { startOrchestrator, Orchestrator } from '../src/main';
import { SearchController } from '../src/api/search.controller';
import { HealthController } from '../src/api/health.controller';
import { toGrpcStatus } from '../src/api/grpc-errors';
import { WorkerService } from '../src/worker/worker.service';
import { Local, startLocal } from './ops-util';

jest.setTimeout(240_000);

const LABEL = 7;
const VERIFIER = 'classifier-logit';
const euler = (steps: number) => ({ solver: Solver.SOLVER_EULER, steps, guidanceScale: 1 });

function request(partial: Partial<SearchRequest>): SearchRequest {
  return SearchRequest.fromPartial({
    model: 'sit-fmnist',
    condition: { classLabel: LABEL },
    searchSolver: euler(6),
    seed: '20250109',
    ...partial,
  } as SearchRequest);
}

const REQUESTS: Record<string, SearchRequest> = {
  random: request({ random: { n: 8 }, budgetNfes: '48' }),
  zero_order: request({ zeroOrder: { n: 2, k: 4, acceptNonImproving: false }, budgetNfes: '48' }),
  paths: request({ paths: { n: 2, m: 2, backwardSteps: 0 }, searchSolver: euler(4), budgetNfes: '1000' }),
};

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

let orch: Orchestrator;
let client: ReturnType<typeof api>;
let rawClient: ReturnType<typeof searchClient>;
let wr: WorkerRpc;
let workerAddress: string;

/** The supervised score of `count` plain random samples (fresh seeds) under the same solver. */
async function plainRandomScores(count: number, solver: ReturnType<typeof euler>): Promise<number[]> {
  const namespace = 'e2e-baseline';
  const seeds = Array.from({ length: count }, (_, i) => String(900_000 + i));
  const noises = await wr.call('initialNoises', { namespace, model: 'sit-fmnist', seeds });
  const solved = await wr.call('denoise', {
    namespace, model: 'sit-fmnist', handles: noises.tensors.map((t) => t.handle), conditions: [{ classLabel: LABEL }],
    solver, sigmaFrom: 1, sigmaTo: 0, captureSigmas: [], releaseInputs: true, firstPredictions: [],
  });
  const scored = await wr.call('score', {
    namespace, model: 'sit-fmnist', handles: solved.tensors.map((t) => t.handle), verifiers: [VERIFIER],
    conditions: [{ classLabel: LABEL }], xPredictionHandles: [],
  });
  await wr.call('release', { namespace, handles: [], all: true });
  return scored.results[0].scores;
}

let local: Local;
beforeAll(async () => {
  local = await startLocal();
  ({ orch, client, rawClient, worker: wr } = local);
  workerAddress = wr.address;
}, 180_000);

afterAll(() => local?.close());

describe.each(Object.keys(REQUESTS))('%s search', (algorithm) => {
  const req = REQUESTS[algorithm];
  let events: SearchEvent[];
  let result: Result;

  beforeAll(async () => {
    events = await client.search(req);
    result = events[events.length - 1].result!;
  });

  it('streams the plan first, then rounds, then the result, each with the job id', () => {
    const kinds = events.map(kindOf);
    expect(kinds[0]).toBe('plan');
    expect(kinds[kinds.length - 1]).toBe('result');
    expect(kinds.slice(1, -1).every((k) => k === 'round')).toBe(true);
    expect(kinds.filter((k) => k === 'round').length).toBe(events[0].plan!.rounds);
    const ids = new Set(events.map((e) => e.jobId));
    expect(ids.size).toBe(1);
    expect([...ids][0]).toMatch(/^job-/);
  });

  it('accounts exactly the plan, within the budget', () => {
    const plan = events[0].plan!;
    const acc = result.accounting!;
    expect(acc.searchNfes).toBe(plan.searchNfes);
    expect(acc.plannedSearchNfes).toBe(plan.searchNfes);
    expect(acc.finalNfes).toBe(plan.finalNfes);
    expect(BigInt(acc.searchNfes)).toBeLessThanOrEqual(BigInt(req.budgetNfes));
    expect(Number(acc.workerCalls)).toBeGreaterThan(0);
    const rounds = events.filter((e) => e.round).map((e) => BigInt(e.round!.nfesSpent));
    expect(rounds[rounds.length - 1]).toBe(BigInt(plan.searchNfes));
  });

  it("beats the median of as many plain random samples (supervised verifier)", async () => {
    const best = result.outputs[0].scores.find((s) => s.verifier === VERIFIER)!.score;
    const plan = events[0].plan!;
    const candidates = algorithm === 'random' ? plan.n : algorithm === 'zero_order' ? plan.n * plan.k : plan.n * plan.m;
    const baseline = await plainRandomScores(candidates, algorithm === 'paths' ? euler(4) : euler(6));
    expect(best).toBeGreaterThanOrEqual(median(baseline));
  });

  it('is deterministic: the same request gives identical PNG bytes', async () => {
    const again = await client.search(req);
    const r2 = again[again.length - 1].result!;
    expect(r2.outputs.length).toBe(result.outputs.length);
    expect(result.outputs[0].png.length).toBeGreaterThan(0);
    expect(Buffer.compare(r2.outputs[0].png, result.outputs[0].png)).toBe(0);
  });

  it("the output's recipe, materialised alone on the worker and decoded, gives the same PNG", async () => {
    const namespace = `e2e-materialize-${algorithm}`;
    const out = result.outputs[0];
    expect(out.recipe).toBeDefined();
    const made = await wr.call('materialize', { namespace, recipes: [out.recipe!] });
    const decoded = await wr.call('decode', { namespace, model: 'sit-fmnist', handles: [made.tensors[0].handle], upscale: 1 });
    await wr.call('release', { namespace, handles: [], all: true });
    expect(Buffer.compare(decoded.png[0], out.png)).toBe(0);
  });
});

describe('raw tensors', () => {
  it('return.raw_tensor gives each output as little-endian float32 bytes of the sample shape, equal to the worker\'s', async () => {
    const req = request({ random: { n: 2 }, numOutputs: 2, return: { png: true, rawTensor: true, candidateScores: false, pngUpscale: 1 } });
    const events = await client.search(req);
    const outputs = events[events.length - 1].result!.outputs;
    expect(outputs).toHaveLength(2);
    const namespace = 'e2e-raw';
    for (const out of outputs) {
      expect(out.tensor!.shape.map(Number)).toEqual([1, 32, 32]);
      expect(out.tensor!.rawData.length).toBe(32 * 32 * 4);
      const made = await wr.call('materialize', { namespace, recipes: [out.recipe!] });
      const fetched = await wr.call('fetch', { namespace, handles: [made.tensors[0].handle] });
      expect(Buffer.compare(Buffer.from(fetched.tensors[0].rawData), Buffer.from(out.tensor!.rawData))).toBe(0);
    }
    await wr.call('release', { namespace, handles: [], all: true });
  });
});

describe('jobs', () => {
  it('submit, watch (replay + follow), get, list', async () => {
    const job = await client.submit(REQUESTS.random);
    expect([JobState.JOB_STATE_QUEUED, JobState.JOB_STATE_RUNNING]).toContain(job.state);
    const events = await client.watch(job.id);
    expect(events.map(kindOf)[0]).toBe('plan');
    expect(kindOf(events[events.length - 1])).toBe('result');
    const done = await client.get(job.id);
    expect(done.state).toBe(JobState.JOB_STATE_SUCCEEDED);
    expect(done.result?.outputs.length).toBe(1);
    const replay = await client.watch(job.id);
    expect(replay.map(kindOf)).toEqual(events.map(kindOf));
    const listed = await client.list(JobState.JOB_STATE_SUCCEEDED, 100);
    expect(listed.jobs.map((j: Job) => j.id)).toContain(job.id);
    expect((await client.list(JobState.JOB_STATE_UNSPECIFIED, 1)).jobs).toHaveLength(1);
  });

  it('cancel mid-job stops worker work: CANCELLED, and the worker is idle afterwards', async () => {
    const ws = orch.app.get(WorkerService);
    // Big enough to still be running when cancelled: 256 candidates x 50 Euler steps.
    const job = await client.submit(request({ random: { n: 256 }, searchSolver: euler(50) }));
    const watched = client.watch(job.id).catch((e) => e);
    // Wait until the worker is busy with the job.
    const t0 = Date.now();
    while (ws.workers[0].rpc.inFlight === 0 && Date.now() - t0 < 30_000) await new Promise((r) => setTimeout(r, 20));
    expect(ws.workers[0].rpc.inFlight).toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, 300));
    const cancelledAt = Date.now();
    const c = await client.cancel(job.id);
    expect(c.state).toBe(JobState.JOB_STATE_CANCELLED);
    expect(ws.workers[0].rpc.inFlight).toBe(0);
    const err = await watched;
    expect(err.code).toBe(grpc.status.CANCELLED);
    // The worker answers a small denoise promptly: it is not still grinding the cancelled batch.
    const namespace = 'e2e-idle';
    const noise = await wr.call('initialNoises', { namespace, model: 'sit-fmnist', seeds: ['1'] });
    const quick = Date.now();
    await wr.call('denoise', {
      namespace, model: 'sit-fmnist', handles: [noise.tensors[0].handle], conditions: [{ classLabel: LABEL }],
      solver: euler(4), sigmaFrom: 1, sigmaTo: 0, captureSigmas: [], releaseInputs: true, firstPredictions: [],
    });
    expect(Date.now() - quick).toBeLessThan(5_000);
    expect(Date.now() - cancelledAt).toBeLessThan(15_000);
    await wr.call('release', { namespace, handles: [], all: true });
    expect((await client.get(job.id)).state).toBe(JobState.JOB_STATE_CANCELLED);
    // The cancelled job's tensors were freed (every test releases its own namespace).
    expect((await wr.call('describe', {})).memoryUsedBytes).toBe('0');
  });
});

describe('stream cancellation and external workers', () => {
  it('a client cancelling its Search stream cancels the job', async () => {
    const call = rawClient.search(request({ random: { n: 256 }, searchSolver: euler(50) }));
    const jobId = await new Promise<string>((resolve, reject) => {
      call.once('data', (e: SearchEvent) => resolve(e.jobId));
      call.once('error', reject);
    });
    call.on('error', () => undefined);
    call.cancel();
    const t0 = Date.now();
    let state = (await client.get(jobId)).state;
    while (state !== JobState.JOB_STATE_CANCELLED && Date.now() - t0 < 15_000) {
      await new Promise((r) => setTimeout(r, 50));
      state = (await client.get(jobId)).state;
    }
    expect(state).toBe(JobState.JOB_STATE_CANCELLED);
  });

  it('NOISESEARCH_WORKER_ADDRESSES: a second orchestrator uses the running worker instead of spawning', async () => {
    const other = await startOrchestrator(
      loadConfig({ NOISESEARCH_WORKER_ADDRESSES: workerAddress }, { grpcAddress: '127.0.0.1:0', httpPort: 0, db: ':memory:' }),
      { logger: ['error'] },
    );
    const c = searchClient(other.grpcAddress);
    try {
      expect(other.app.get(WorkerService).workers.map((x) => x.local)).toEqual([undefined]);
      const events = await api(c).search(REQUESTS.random);
      const first = await client.search(REQUESTS.random);
      expect(Buffer.compare(events[events.length - 1].result!.outputs[0].png, first[first.length - 1].result!.outputs[0].png)).toBe(0);
    } finally {
      c.close();
      await other.close();
    }
    // The shared worker is still serving.
    expect((await wr.call('describe', {})).models[0].name).toBe('sit-fmnist');
  });
});

describe('bad requests', () => {
  const cases: [string, SearchRequest, string][] = [
    ['unknown model', request({ model: 'no-such-model', random: { n: 2 } }), 'model'],
    ['unknown verifier', request({ random: { n: 2 }, verifiers: [{ name: 'no-such-verifier', weight: 1 }] }), 'verifiers'],
    ['n = 0', request({ random: { n: 0 } }), 'random.n'],
    ['delta_backward <= delta_forward', request({ paths: { n: 2, m: 2, deltaForward: 0.1, deltaBackward: 0.1, backwardSteps: 0 } }), 'paths.delta_backward'],
    ['label out of range', request({ random: { n: 2 }, condition: { classLabel: 10 } }), 'condition.class_label'],
  ];

  it.each(cases)('%s -> INVALID_ARGUMENT naming the field (Search, PlanSearch, Submit)', async (_name, req, field) => {
    for (const call of [() => client.search(req), () => client.plan(req), () => client.submit(req)]) {
      const err = await call().then(() => undefined, (e) => e);
      expect(err?.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(err.details).toContain(field);
    }
  });

  it('negative or non-integer budget -> INVALID_ARGUMENT naming budget_nfes', () => {
    // uint64 cannot carry these on the wire (the client's encoder refuses them); the server's own
    // validation is exercised through the controller the gRPC transport calls.
    const controller = orch.app.get(SearchController);
    for (const budgetNfes of ['-5', '1.5']) {
      let thrown: unknown;
      try {
        controller.planSearch({ ...request({ random: { n: 2 } }), budgetNfes });
      } catch (e) {
        thrown = e;
      }
      const s = toGrpcStatus(thrown);
      expect(s.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(s.message).toContain('budget_nfes');
    }
  });

  it('over budget -> RESOURCE_EXHAUSTED with cost and budget', async () => {
    const req = request({ random: { n: 10 }, budgetNfes: '30' });
    const err = await client.search(req).then(() => undefined, (e) => e);
    expect(err?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(err.details).toContain('60');
    expect(err.details).toContain('30');
    const shrunk = await client.plan({ ...req, shrinkToFit: true });
    expect(shrunk).toMatchObject({ shrunk: true, n: 5, searchNfes: '30' });
  });

  it('unknown job ids -> NOT_FOUND', async () => {
    const err = await client.get('job-nope').then(() => undefined, (e) => e);
    expect(err?.code).toBe(grpc.status.NOT_FOUND);
  });
});

describe('health', () => {
  it('GET /health reports the worker serving', async () => {
    const body = await orch.app.get(HealthController).health();
    expect(body.status).toBe('ok');
    expect(body.workers?.[0]).toMatchObject({ serving: true, spawned: true, inFlight: 0 });
  });

  it('serves grpc.health.v1 on the public port', async () => {
    const protoLoader = await import('@grpc/proto-loader');
    const { protoPath } = await import('grpc-health-check');
    const def = protoLoader.loadSync(protoPath, { keepCase: true, enums: String, defaults: true });
    const Health = (grpc.loadPackageDefinition(def) as any).grpc.health.v1.Health;
    const h = new Health(orch.grpcAddress, grpc.credentials.createInsecure());
    const res = await new Promise<any>((resolve, reject) =>
      h.Check({ service: 'noisesearch.search.v1.Search' }, (e: Error | null, r: unknown) => (e ? reject(e) : resolve(r))));
    h.close();
    expect(res.status).toBe('SERVING');
  });
});

// End to end, lean: successive halving, Feynman-Kac steering and rollover budget forcing through the
// public gRPC API (the Nest app in front of the real Python worker it spawns) on the default model;
// each account within its budget and as planned, each result rebuilt bit-identically from its recipe
// (Worker.Materialize, then Decode), and one resume from a checkpoint in a fresh worker namespace
// (every tensor lost, as after a kill) equal to the uninterrupted run.
import { FkPotential, Result, Round, SearchEvent, SearchRequest } from '../src/gen/noisesearch/search/v1/search';
import { Solver } from '../src/gen/noisesearch/worker/v1/worker';
import { api, kindOf } from '../src/cli/client';
import { catalogFromDescribe, DEFAULT_LIMITS } from '../src/search/catalog';
import { decodeCheckpoint, encodeCheckpoint, type SearchCheckpoint } from '../src/search/checkpoint';
import { runSearch } from '../src/search/run-search';
import { GrpcWorkerPort } from '../src/worker/grpc-worker-port';
import { WorkerRpc } from '../src/worker/worker-rpc';
import { Local, startLocal } from './ops-util';

jest.setTimeout(240_000);

const euler = (steps: number) => ({ solver: Solver.SOLVER_EULER, steps, guidanceScale: 1 });
const ALL = { png: true, rawTensor: false, candidateScores: true, pngUpscale: 1 };

function request(partial: Partial<SearchRequest>): SearchRequest {
  return SearchRequest.fromPartial({ condition: { classLabel: 7 }, searchSolver: euler(6), seed: '20250109', return: ALL, ...partial } as SearchRequest);
}

const REQUESTS: Record<string, SearchRequest> = {
  successive_halving: request({ successiveHalving: { n: 8, rungs: [0.7, 0.4], reduction: 2, freeLookahead: false }, budgetNfes: '100' }),
  feynman_kac: request({ feynmanKac: { k: 4, potential: FkPotential.FK_POTENTIAL_MAX, resampleEvery: 2 }, budgetNfes: '100' }),
  rollover_budget: request({ rolloverBudget: { nfes: '40', proposalsPerCall: 3, initialNoises: 3 }, budgetNfes: '40' }),
};

let client: ReturnType<typeof api>;
let wr: WorkerRpc;

let local: Local;
beforeAll(async () => {
  local = await startLocal();
  ({ client, worker: wr } = local);
}, 180_000);

afterAll(() => local?.close());

describe.each(Object.keys(REQUESTS))('%s', (algorithm) => {
  const req = REQUESTS[algorithm];
  let events: SearchEvent[];
  let result: Result;

  beforeAll(async () => {
    events = await client.search(req);
    result = events[events.length - 1].result!;
  });

  it('streams plan, rounds with progress and every candidate, then the result; the account is within the budget and as planned', () => {
    const kinds = events.map(kindOf);
    expect(kinds[0]).toBe('plan');
    expect(kinds[kinds.length - 1]).toBe('result');
    const plan = events[0].plan!;
    const rounds = events.filter((e) => e.round).map((e) => e.round!);
    const acc = result.accounting!;
    expect(BigInt(acc.searchNfes)).toBeLessThanOrEqual(BigInt(req.budgetNfes));
    expect(BigInt(rounds[rounds.length - 1].nfesSpent)).toBe(BigInt(acc.searchNfes));
    if (algorithm === 'rollover_budget') {
      expect(plan.searchNfesUpperBound).toBe(true);
      expect(BigInt(acc.searchNfes) + BigInt(acc.unspentNfes!)).toBe(BigInt(plan.searchNfes));
      expect(rounds.every((r) => r.proposals! >= 1)).toBe(true);
      // initial_noises 3: the first round scores the 3 noises' x-predictions and keeps the best by reward.
      expect(rounds[0].candidates).toHaveLength(3);
      const best = [...rounds[0].candidates].sort((x, y) => y.ensembleScore - x.ensembleScore)[0];
      expect(rounds[0].kept).toEqual([best.id]);
    } else {
      expect(acc.searchNfes).toBe(plan.searchNfes);
      expect(rounds).toHaveLength(plan.rounds);
    }
    if (algorithm === 'feynman_kac') expect(rounds.slice(0, -1).every((r) => r.ess! >= 1 && r.ess! <= 4)).toBe(true);
    if (algorithm === 'successive_halving') expect(plan.levels!.sizes).toEqual([8, 4, 2]);
    expect(result.candidates.length).toBe(rounds.reduce((s, r) => s + r.candidates.length, 0));
    expect(result.candidates.every((c) => c.scores.length > 0 && c.recipe)).toBe(true);
  });

  it("the output's recipe, materialised alone on the worker and decoded, gives the same PNG", async () => {
    const namespace = `e2e-new-${algorithm}`;
    const out = result.outputs[0];
    const made = await wr.call('materialize', { namespace, recipes: [out.recipe!] });
    const decoded = await wr.call('decode', { namespace, model: 'sit-fmnist', handles: [made.tensors[0].handle], upscale: 1 });
    await wr.call('release', { namespace, handles: [], all: true });
    expect(out.png.length).toBeGreaterThan(0);
    expect(Buffer.compare(decoded.png[0], out.png)).toBe(0);
  });
});

test('feynman_kac resumed from a checkpoint with every tensor lost gives the uninterrupted bytes and account', async () => {
  const catalog = catalogFromDescribe(await wr.call('describe', {}));
  const req = { ...REQUESTS.feynman_kac, model: 'sit-fmnist' };
  let spaces = 0;
  const run = async (resume?: { checkpoint: SearchCheckpoint; rounds: Round[] }) => {
    const port = new GrpcWorkerPort(wr, { model: req.model, condition: req.condition, namespace: `e2e-new-resume.${spaces++}` });
    const rounds: Round[] = [];
    const checkpoints: SearchCheckpoint[] = [];
    try {
      const result = await runSearch(port, req, catalog, DEFAULT_LIMITS, {
        onRound: (r, cp) => { rounds.push(r); checkpoints.push(decodeCheckpoint(encodeCheckpoint(cp))); },
      }, new AbortController().signal, resume ? { resume } : {});
      return { result, rounds, checkpoints };
    } finally {
      await port.releaseAll();
    }
  };
  const whole = await run();
  const resumed = await run({ checkpoint: whole.checkpoints[1], rounds: whole.rounds.slice(0, 2) });
  expect(Buffer.compare(resumed.result.outputs[0].png, whole.result.outputs[0].png)).toBe(0);
  expect(resumed.result.outputs[0].recipe).toEqual(whole.result.outputs[0].recipe);
  expect(resumed.result.accounting!.searchNfes).toBe(whole.result.accounting!.searchNfes);
  expect(Number(resumed.result.accounting!.recoveryNfes)).toBeGreaterThan(0); // the particles were rebuilt from their recipes
  expect(resumed.rounds.map((r) => r.candidates.map((c) => c.scores))).toEqual(whole.rounds.slice(2).map((r) => r.candidates.map((c) => c.scores)));
});

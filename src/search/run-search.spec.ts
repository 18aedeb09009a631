import fc from 'fast-check';
import { Solver } from '../gen/noisesearch/worker/v1/worker';
import { DEFAULT_LIMITS } from './catalog';
import { SearchError } from './errors';
import { runSearch } from './run-search';
import { FAKE_CATALOG, FakeWorker } from './testing/fake-worker';
import { request } from './testing/requests';
import { runOnFake } from './testing/run';

const euler = (steps: number, guidanceScale = 1) => ({ solver: Solver.SOLVER_EULER, steps, guidanceScale });

const algorithmArb = fc.oneof(
  fc.record({ random: fc.record({ n: fc.integer({ min: 1, max: 12 }) }) }),
  fc.record({
    zeroOrder: fc.record({
      n: fc.integer({ min: 1, max: 4 }), k: fc.integer({ min: 1, max: 6 }), tau: fc.double({ min: 0.5, max: 0.99, noNaN: true }),
      acceptNonImproving: fc.boolean(), maxRejections: fc.integer({ min: 0, max: 3 }),
    }),
  }),
  fc.record({
    paths: fc.record({
      n: fc.integer({ min: 1, max: 3 }), m: fc.integer({ min: 1, max: 3 }), sigmaStart: fc.constantFrom(0.3, 0.5, 0.9),
      deltaForward: fc.constantFrom(0.05, 0.1), deltaBackward: fc.constantFrom(0.15, 0.2), backwardSteps: fc.integer({ min: 0, max: 2 }),
    }),
  }),
);

describe('runSearch on the fake worker', () => {
  it('PROPERTY: never spends more than its budget, and the account equals the plan', async () => {
    await fc.assert(
      fc.asyncProperty(
        algorithmArb,
        fc.integer({ min: 0, max: 600 }),
        fc.constantFrom(euler(4), euler(3, 2), { solver: Solver.SOLVER_HEUN, steps: 5, guidanceScale: 1 }),
        fc.option(fc.constantFrom(euler(6), euler(4)), { nil: undefined }),
        fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        async (alg, budget, searchSolver, finalSolver, seed) => {
          const req = request({ ...alg, budgetNfes: String(budget), shrinkToFit: true, searchSolver, finalSolver: 'paths' in alg ? undefined : finalSolver, seed: seed.toString() });
          let run;
          try {
            run = await runOnFake(req);
          } catch (e) {
            // The only acceptable refusal: the budget cannot fit even one unit of the scaling axis.
            expect(e).toMatchObject({ code: 'RESOURCE_EXHAUSTED', field: 'budget_nfes' });
            return;
          }
          const a = run.result.accounting!;
          expect(a.searchNfes).toBe(run.plan.searchNfes);
          expect(a.finalNfes).toBe(run.plan.finalNfes);
          expect(Number(a.totalNfes)).toBe(Number(a.searchNfes) + Number(a.finalNfes));
          if (budget > 0) expect(Number(a.searchNfes)).toBeLessThanOrEqual(budget);
          expect(run.worker.doubleReleases).toEqual([]);
          expect(run.worker.liveHandles()).toBe(0);
          expect(run.result.outputs).toHaveLength(1);
          expect(run.rounds).toHaveLength(run.plan.rounds);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('returns outputs with PNGs, recipes, every verifier (held-out flagged) and the account', async () => {
    const { result, worker } = await runOnFake(request({ random: { n: 6 }, numOutputs: 2, finalSolver: euler(20), return: { png: true, rawTensor: false, candidateScores: true, pngUpscale: 3 } }));
    expect(result.outputs.map((o) => o.rank)).toEqual([1, 2]);
    for (const o of result.outputs) {
      expect(o.png[0]).toBe(3);
      expect(o.recipe?.denoise?.solver).toEqual(euler(20));
      expect(o.recipe?.denoise?.parent).toEqual(o.searchRecipe?.denoise?.parent); // same noise, re-solved
      expect(o.scores.map((s) => [s.verifier, s.heldOut])).toEqual([['supervised', false], ['heldout', true]]);
    }
    expect(result.candidates).toHaveLength(6);
    expect(result.accounting).toMatchObject({ searchNfes: '114', finalNfes: '40', totalNfes: '154', plannedSearchNfes: '114', budgetNfes: '0', verifierCalls: String(6 * 2 + 2 * 2) });
    expect(Number(result.accounting!.workerCalls)).toBe(worker.calls.length);
    expect(result.plan?.searchNfes).toBe('114');
  });

  it('reuses the searched samples when the final settings equal the search settings', async () => {
    const { result, worker } = await runOnFake(request({ random: { n: 4 } }));
    expect(worker.countOf('denoise')).toBe(1);
    expect(worker.countOf('score')).toBe(2); // the candidates (selection verifiers), then the output (held-out)
    expect(result.outputs[0].recipe).toEqual(result.outputs[0].searchRecipe);
    expect(result.accounting?.finalNfes).toBe('0');
  });

  it('held-out verifiers score the returned outputs only, unless every candidate\'s scores are asked for', async () => {
    const scoreCalls = (w: FakeWorker) => w.calls.filter((c) => c.method === 'score').map((c) => [c.batch, (c.detail as { verifiers: string[] }).verifiers]);
    const zo = { zeroOrder: { n: 3, k: 2, acceptNonImproving: false }, numOutputs: 2 };
    const lean = await runOnFake(request(zo));
    expect(scoreCalls(lean.worker)).toEqual([[3, ['supervised']], [3, ['supervised']], [2, ['heldout']]]);
    expect(lean.result.accounting?.verifierCalls).toBe(String(3 + 3 + 2));
    const all = await runOnFake(request({ ...zo, return: { png: true, rawTensor: false, candidateScores: true, pngUpscale: 1 } }));
    expect(scoreCalls(all.worker)).toEqual([[3, ['supervised', 'heldout']], [3, ['supervised', 'heldout']]]);
    // The same outputs, with the same scores, either way; the round tables differ only by the held-out column.
    expect(lean.result.outputs).toEqual(all.result.outputs);
    expect(lean.rounds[0].candidates[0].scores.map((x) => x.verifier)).toEqual(['supervised']);
    expect(all.result.candidates[0].scores.map((x) => x.verifier)).toEqual(['supervised', 'heldout']);
  });

  it('puts verifier calls and verifier time on the account and in every round', async () => {
    const { result, rounds } = await runOnFake(request({ zeroOrder: { n: 2, k: 3, acceptNonImproving: false } }));
    expect(rounds.map((r) => r.verifierCalls)).toEqual(['2', '4', '6']);
    // The fake worker reports 1/1024 s per scored sample and verifier (the real one its measured time).
    expect(rounds.map((r) => r.verifierSeconds)).toEqual([2 / 1024, 4 / 1024, 6 / 1024]);
    expect(result.accounting?.verifierCalls).toBe('7');
    expect(result.accounting?.verifierSeconds).toBe(7 / 1024);
  });

  it('hands the final samples to fetchTensors when raw tensors are asked for', async () => {
    const worker = new FakeWorker();
    const fetched: string[] = [];
    const result = await runSearch(worker, request({ random: { n: 3 }, return: { png: false, rawTensor: true, candidateScores: false, pngUpscale: 0 } }), FAKE_CATALOG, DEFAULT_LIMITS, {
      fetchTensors: async (samples) => {
        fetched.push(...samples.map((s) => s.handle));
        return samples.map(() => ({ dtype: 1, shape: ['8'], rawData: Buffer.alloc(32) }));
      },
    }, new AbortController().signal);
    expect(fetched).toHaveLength(1);
    expect(result.outputs[0].tensor?.shape).toEqual(['8']);
    expect(result.outputs[0].png).toHaveLength(0);
    expect(worker.countOf('decode')).toBe(0);
  });

  it('captures the x-prediction for the self-supervised verifier and scores with it', async () => {
    const { worker, result } = await runOnFake(request({ zeroOrder: { n: 2, k: 2, acceptNonImproving: false }, verifiers: [{ name: 'self-supervised', weight: 1 }], finalSolver: euler(7) }));
    const denoises = worker.calls.filter((c) => c.method === 'denoise');
    expect(denoises.every((c) => (c.detail as { captureSigmas?: number[] }).captureSigmas?.[0] === 0.4)).toBe(true);
    expect(worker.calls.filter((c) => c.method === 'score').every((c) => (c.detail as { xPredictions?: unknown[] }).xPredictions !== undefined)).toBe(true);
    expect(result.outputs[0].scores.map((s) => s.verifier)).toEqual(['self-supervised', 'heldout']);
    expect(worker.liveHandles()).toBe(0);
  });

  it('is deterministic: the same request twice chooses the same recipes', async () => {
    for (const alg of [{ random: { n: 5 } }, { zeroOrder: { n: 3, k: 4, acceptNonImproving: false } }, { paths: { n: 2, m: 2, backwardSteps: 0 } }]) {
      const req = request({ ...alg, numOutputs: 2, seed: '987654321' });
      const a = await runOnFake(req);
      const b = await runOnFake(req);
      expect(b.result.outputs.map((o) => o.recipe)).toEqual(a.result.outputs.map((o) => o.recipe));
      expect(b.result.outputs.map((o) => o.scores)).toEqual(a.result.outputs.map((o) => o.scores));
      const c = await runOnFake({ ...req, seed: '1' });
      expect(c.result.outputs[0].recipe).not.toEqual(a.result.outputs[0].recipe);
    }
  });

  it('refuses with INTERNAL when the worker reports NFEs other than the plan', async () => {
    await expect(runOnFake(request({ random: { n: 2 } }), { nfeSkew: 1 })).rejects.toMatchObject({ code: 'INTERNAL' });
  });

  it('cancellation stops between rounds with CANCELLED', async () => {
    for (const alg of [{ zeroOrder: { n: 2, k: 10, acceptNonImproving: false } }, { paths: { n: 2, m: 2, backwardSteps: 0 } }]) {
      const controller = new AbortController();
      const worker = new FakeWorker({
        beforeCall: (method, calls) => {
          if (method === 'score' && calls.filter((c) => c.method === 'score').length === 1) controller.abort();
        },
      });
      const rounds: number[] = [];
      const run = runSearch(worker, request(alg), FAKE_CATALOG, DEFAULT_LIMITS, { onRound: (r) => rounds.push(r.round) }, controller.signal);
      await expect(run).rejects.toBeInstanceOf(SearchError);
      await expect(run).rejects.toMatchObject({ code: 'CANCELLED' });
      expect(worker.countOf('score')).toBe(2); // the round in flight finishes; no further round starts
      expect(worker.countOf('decode')).toBe(0);
    }
  });

  it('an already-cancelled search calls no NFE-spending method', async () => {
    const controller = new AbortController();
    controller.abort();
    const worker = new FakeWorker();
    await expect(runSearch(worker, request({ random: { n: 3 } }), FAKE_CATALOG, DEFAULT_LIMITS, {}, controller.signal)).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(worker.countOf('denoise')).toBe(0);
  });

  it('emits the plan before any round', async () => {
    const order: string[] = [];
    await runSearch(new FakeWorker(), request({ random: { n: 2 } }), FAKE_CATALOG, DEFAULT_LIMITS, { onPlan: () => order.push('plan'), onRound: () => order.push('round') }, new AbortController().signal);
    expect(order).toEqual(['plan', 'round']);
  });
});


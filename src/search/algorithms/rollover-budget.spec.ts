import fc from 'fast-check';
import { Solver } from '../../gen/noisesearch/worker/v1/worker';
import { DEFAULT_LIMITS } from '../catalog';
import { planSearch, resolveRequest } from '../plan';
import { FAKE_CATALOG } from '../testing/fake-worker';
import { request } from '../testing/requests';
import { runOnFake } from '../testing/run';
import { resumeMatches } from './testing-resume';

const euler = (steps: number, guidanceScale = 1) => ({ solver: Solver.SOLVER_EULER, steps, guidanceScale });
const rbf = (nfes: number, extra = {}) => ({ rolloverBudget: { nfes: String(nfes), proposalsPerCall: 2, ...extra } });
const ret = { png: true, rawTensor: false, candidateScores: true, pngUpscale: 1 };

describe('rollover budget forcing', () => {
  it('PROPERTY: the account never passes the budget, the unspent rest is reported, and the plan is an upper bound', async () => {
    await fc.assert(fc.asyncProperty(
      fc.integer({ min: 2, max: 6 }), fc.integer({ min: 0, max: 40 }), fc.integer({ min: 1, max: 4 }), fc.boolean(), fc.bigInt({ min: 0n, max: 1n << 40n }),
      async (steps, extra, perCall, guided, seed) => {
        const g = guided ? 2 : 1;
        const nfes = g + (steps - 1) * g + extra; // the start's x-prediction and at least one proposal per step
        const req = request({ ...rbf(nfes, { proposalsPerCall: perCall }), searchSolver: euler(steps, g), seed: seed.toString(), return: ret });
        const { result, plan, rounds, worker } = await runOnFake(req);
        const a = result.accounting!;
        expect(plan.searchNfesUpperBound).toBe(true);
        expect(plan.searchNfes).toBe(String(nfes));
        expect(Number(a.searchNfes)).toBeLessThanOrEqual(nfes);
        expect(Number(a.unspentNfes)).toBe(nfes - Number(a.searchNfes));
        // Spent = g for the noise's x-prediction and g per proposal (its stochastic step reuses the particle's
        // x-prediction), nothing else (the last step's sample is the x-prediction already paid for).
        expect(Number(a.searchNfes)).toBe(g + g * result.candidates.length);
        expect(rounds.every((r) => Number(r.nfesSpent) <= nfes)).toBe(true);
        // Every proposal is a candidate with scores; each round says its share and proposals.
        expect(result.candidates.length).toBe(rounds.reduce((s, r) => s + r.proposals!, 0));
        expect(result.candidates.every((c) => c.scores.length > 0)).toBe(true);
        expect(rounds.every((r) => r.proposals! >= 1 && Number(r.stepShareNfes) >= g)).toBe(true);
        expect(worker.liveHandles()).toBe(0);
      }), { numRuns: 40 });
  });

  it('draws proposals until one improves, rolls the rest of the share over, and returns the final x-prediction', async () => {
    // 4 steps: 3 proposal steps; a proposal costs 1 NFE; 25 NFEs = the start's x-prediction + an even share of 8 per step.
    const { rounds, result, worker } = await runOnFake(request({ ...rbf(25), searchSolver: euler(4), return: ret }));
    expect(rounds[0].proposals).toBe(2); // the first call always improves on nothing
    expect(rounds[0].stepShareNfes).toBe('9'); // its share pays the start's x-prediction too
    const first = rounds.filter((r) => r.sigma === 0.5);
    // Step 2's share is its even share plus step 1's leftover (9 - 1 - 2 = 6).
    expect(first[0].stepShareNfes).toBe('14');
    expect(result.outputs[0].recipe!.xPrediction).toBeDefined();
    expect(result.accounting!.finalNfes).toBe('0');
    const solves = worker.calls.filter((c) => c.method === 'denoise').map((c) => c.detail as { solver: { solver: Solver; steps: number } });
    expect(solves.every((s) => s.solver.solver === Solver.SOLVER_DDIM_ETA && s.solver.steps === 1)).toBe(true);
  });

  it('every proposal steps from the particle with the particle\'s own x-prediction as its evaluation', async () => {
    const { rounds, worker } = await runOnFake(request({ ...rbf(25), searchSolver: euler(4), return: ret }));
    type Ref = { handle: string; recipe: { xPrediction?: { sigma: number; parent: unknown } } };
    const calls = worker.calls.filter((c) => c.method === 'denoise' || c.method === 'xPrediction');
    expect(calls[0].method).toBe('xPrediction'); // the noise's, at sigma 1, once
    expect(worker.countOf('xPrediction')).toBe(1 + rounds.length);
    const solves = worker.calls.filter((c) => c.method === 'denoise').map((c) => c.detail as { inputs: Ref[]; firstPredictions: Ref[]; sigmaFrom: number });
    expect(solves).toHaveLength(rounds.length);
    for (const s of solves) {
      expect(s.firstPredictions).toHaveLength(s.inputs.length);
      s.firstPredictions.forEach((f, i) => {
        expect(f.recipe.xPrediction!.sigma).toBe(s.sigmaFrom);
        expect(f.recipe.xPrediction!.parent).toEqual(s.inputs[i].recipe);
      });
    }
  });

  it('shrinks its budget to budget_nfes; refuses under the minimum, naming the field', () => {
    const plan = planSearch(resolveRequest(request({ ...rbf(500), searchSolver: euler(4), budgetNfes: '40', shrinkToFit: true }), FAKE_CATALOG, DEFAULT_LIMITS));
    expect([plan.searchNfes, plan.shrunkAxis, plan.requestedAxisValue]).toEqual(['40', 'rollover_budget.nfes', 500]);
    // The least budget with euler(4): the start's x-prediction and 3 proposals, 4 NFEs.
    expect(planSearch(resolveRequest(request({ ...rbf(4), searchSolver: euler(4) }), FAKE_CATALOG, DEFAULT_LIMITS)).searchNfes).toBe('4');
    expect(() => planSearch(resolveRequest(request({ ...rbf(3), searchSolver: euler(4) }), FAKE_CATALOG, DEFAULT_LIMITS))).toThrow(/rollover_budget.nfes/);
    expect(() => planSearch(resolveRequest(request({ ...rbf(500), searchSolver: euler(4), budgetNfes: '3', shrinkToFit: true }), FAKE_CATALOG, DEFAULT_LIMITS))).toThrow(/budget_nfes/);
    expect(() => resolveRequest(request({ ...rbf(50, { eta: -0.1 }) }), FAKE_CATALOG, DEFAULT_LIMITS)).toThrow(/rollover_budget.eta/);
    expect(() => resolveRequest(request({ ...rbf(50), searchSolver: euler(1) }), FAKE_CATALOG, DEFAULT_LIMITS)).toThrow(/search_solver.steps/);
  });

  it('resumes after any round bit-identically', async () => {
    await resumeMatches(request({ ...rbf(30), searchSolver: euler(4), return: ret }));
  });
});

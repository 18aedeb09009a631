import fc from 'fast-check';
import { Solver } from '../../gen/noisesearch/worker/v1/worker';
import type { Candidate, Plan, Round } from '../../gen/noisesearch/search/v1/search';
import { DEFAULT_LIMITS } from '../catalog';
import { planSearch, resolveRequest } from '../plan';
import { deriveSeed } from '../seeds';
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

  describe('initial_noises: the walk starts from the best of n0 noises', () => {
    const rewardOf = (c: Candidate, plan: Plan) => c.scores.filter((v) => plan.selectionVerifiers.includes(v.verifier)).reduce((a, v) => a + v.score, 0);
    const maxReward = (r: Round, plan: Plan) => Math.max(...r.candidates.map((c) => rewardOf(c, plan)));
    const seedOf = (c: Candidate) => c.recipe!.seed!.seed;

    it('PROPERTY (n0 in [1, 4]): the account never passes the budget, the unspent rest is reported, the plan is an upper bound, and the initial round keeps the best', async () => {
      await fc.assert(fc.asyncProperty(
        fc.integer({ min: 2, max: 6 }), fc.integer({ min: 0, max: 40 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 4 }), fc.boolean(), fc.bigInt({ min: 0n, max: 1n << 40n }),
        async (steps, extra, perCall, n0, guided, seed) => {
          const g = guided ? 2 : 1;
          const nfes = n0 * g + (steps - 1) * g + extra;
          const req = request({ ...rbf(nfes, { proposalsPerCall: perCall, initialNoises: n0 }), searchSolver: euler(steps, g), seed: seed.toString(), return: ret });
          const { result, plan, rounds, worker } = await runOnFake(req);
          const a = result.accounting!;
          expect(plan.searchNfesUpperBound).toBe(true);
          expect(plan.searchNfes).toBe(String(nfes));
          expect(Number(a.searchNfes)).toBeLessThanOrEqual(nfes);
          expect(Number(a.unspentNfes)).toBe(nfes - Number(a.searchNfes));
          const initial = n0 > 1 ? n0 : 0; // the initial round's candidates (none with n0 = 1)
          const proposals = result.candidates.length - initial;
          // Spent = n0 * g for the noises' x-predictions and g per proposal, nothing else.
          expect(Number(a.searchNfes)).toBe(n0 * g + g * proposals);
          // plan-beyond's candidates bound: n0 (their round) + at most nfes - n0 proposals.
          expect(result.candidates.length).toBeLessThanOrEqual(initial + Math.max(1, nfes - n0));
          expect(rounds.every((r) => Number(r.nfesSpent) <= nfes)).toBe(true);
          expect(result.candidates.length).toBe(rounds.reduce((s, r) => s + r.proposals!, 0));
          expect(result.candidates.every((c) => c.scores.length > 0)).toBe(true);
          expect(rounds.every((r) => r.proposals! >= 1 && Number(r.stepShareNfes) >= g)).toBe(true);
          if (n0 > 1) {
            const [first, next] = rounds;
            expect([first.sigma, first.candidates.length, first.nfesSpent]).toEqual([1, n0, String(n0 * g)]);
            const kept = first.candidates.filter((c) => c.kept);
            expect(kept).toHaveLength(1);
            expect(rewardOf(kept[0], plan)).toBe(maxReward(first, plan));
            // The bar starts at the kept noise's reward: the first proposal call improves only by beating it.
            expect(next.note.includes('improved')).toBe(maxReward(next, plan) > rewardOf(kept[0], plan));
          }
          expect(worker.liveHandles()).toBe(0);
        }), { numRuns: 40 });
    });

    it('n0 = 4: a first round scores 4 noises and keeps the best; the proposals step from it; the account is 4g + g per proposal', async () => {
      const { rounds, result, plan, worker } = await runOnFake(request({ ...rbf(25, { initialNoises: 4 }), searchSolver: euler(4, 2), return: ret }));
      const g = 2;
      const first = rounds[0];
      expect(first.candidates.map((c) => c.id)).toEqual(['r1.c0', 'r1.c1', 'r1.c2', 'r1.c3']);
      expect(first.candidates.every((c) => c.scores.length > 0)).toBe(true);
      const best = first.candidates.reduce((b, c) => (rewardOf(c, plan) > rewardOf(b, plan) ? c : b));
      expect(first.kept).toEqual([best.id]);
      expect(first.candidates.filter((c) => c.kept).map((c) => c.id)).toEqual([best.id]);
      expect(first.nfesSpent).toBe(String(4 * g));
      // The first noise keeps the one-noise seed; the others are numbered.
      expect(first.candidates.map(seedOf)).toEqual([deriveSeed('42', 'rollover_budget', 'noise'), ...[1, 2, 3].map((i) => deriveSeed('42', 'rollover_budget', 'noise', i))]);
      // Share of step 1: (25 - 8) / 3 = 5, plus the 8 of the initial round.
      expect(first.stepShareNfes).toBe('13');
      expect(Number(result.accounting!.searchNfes)).toBe(4 * g + g * (result.candidates.length - 4));
      // One batched x-prediction call for the 4 noises, then one per proposal round; every proposal steps
      // from the kept noise with its x-prediction.
      expect(worker.countOf('xPrediction')).toBe(rounds.length);
      type Ref = { recipe: { seed?: { seed: string }; xPrediction?: { sigma: number; parent: { seed?: { seed: string } } } } };
      const solves = worker.calls.filter((c) => c.method === 'denoise').map((c) => c.detail as { inputs: Ref[]; firstPredictions: Ref[] });
      expect(solves).toHaveLength(rounds.length - 1);
      expect(solves[0].inputs.every((i) => i.recipe.seed?.seed === seedOf(best))).toBe(true);
      expect(solves[0].firstPredictions.every((f) => f.recipe.xPrediction!.sigma === 1 && f.recipe.xPrediction!.parent.seed?.seed === seedOf(best))).toBe(true);
      expect(rounds.slice(1).every((r) => r.candidates.every((c) => c.recipe!.denoise !== undefined))).toBe(true);
      expect(result.accounting!.finalNfes).toBe('0');
    });

    it('n0 = 1 (explicit) is the default: the same rounds, result and account', async () => {
      const a = await runOnFake(request({ ...rbf(25), searchSolver: euler(4), return: ret }));
      const b = await runOnFake(request({ ...rbf(25, { initialNoises: 1 }), searchSolver: euler(4), return: ret }));
      const timeless = (r: Round) => ({ ...r, verifierSeconds: 0 });
      expect(b.rounds.map(timeless)).toEqual(a.rounds.map(timeless));
      expect(b.result.candidates).toEqual(a.result.candidates);
      expect(b.result.outputs).toEqual(a.result.outputs);
      expect(b.result.accounting!.searchNfes).toBe(a.result.accounting!.searchNfes);
    });

    it('the least budget is n0 * g + (S - 1) * g, refused under it naming rollover_budget.nfes; bad initial_noises are refused naming the field', () => {
      const plan = (nfes: number, n0: number, g = 1) => planSearch(resolveRequest(request({ ...rbf(nfes, { initialNoises: n0 }), searchSolver: euler(4, g) }), FAKE_CATALOG, DEFAULT_LIMITS));
      expect(plan(7, 4).searchNfes).toBe('7');
      expect(() => plan(6, 4)).toThrow(/rollover_budget.nfes/);
      expect(plan(14, 4, 2).searchNfes).toBe('14');
      expect(() => plan(13, 4, 2)).toThrow(/rollover_budget.nfes/);
      expect(plan(500, 25).request!.rolloverBudget!.initialNoises).toBe(25);
      expect(plan(500, 0).request!.rolloverBudget!.initialNoises).toBe(1);
      const shrunk = (budget: string) => planSearch(resolveRequest(request({ ...rbf(500, { initialNoises: 4 }), searchSolver: euler(4), budgetNfes: budget, shrinkToFit: true }), FAKE_CATALOG, DEFAULT_LIMITS));
      expect(shrunk('7').searchNfes).toBe('7');
      expect(() => shrunk('6')).toThrow(/budget_nfes/);
      for (const bad of [-1, 1.5, DEFAULT_LIMITS.maxCandidates + 1]) {
        expect(() => resolveRequest(request({ ...rbf(500, { initialNoises: bad }), searchSolver: euler(4) }), FAKE_CATALOG, DEFAULT_LIMITS)).toThrow(/rollover_budget.initial_noises/);
      }
    });

    it('resumes after any round bit-identically, the initial round included', async () => {
      const whole = await resumeMatches(request({ ...rbf(30, { initialNoises: 4 }), searchSolver: euler(4), return: ret }));
      expect(whole.rounds[0].candidates).toHaveLength(4);
    });
  });
});

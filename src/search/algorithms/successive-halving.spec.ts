import { Solver } from '../../gen/noisesearch/worker/v1/worker';
import { DEFAULT_LIMITS } from '../catalog';
import { FAKE_CATALOG } from '../testing/fake-worker';
import { planSearch, resolveRequest } from '../plan';
import { request } from '../testing/requests';
import { runOnFake } from '../testing/run';
import { reusesRung, rungSizes, successiveHalvingNfes } from './successive-halving';
import { resumeMatches } from './testing-resume';

const euler = (steps: number) => ({ solver: Solver.SOLVER_EULER, steps, guidanceScale: 1 });
const sh = (n: number, extra = {}) => ({ successiveHalving: { n, rungs: [0.75, 0.5], reduction: 2, freeLookahead: false, ...extra } });
const ret = { png: true, rawTensor: false, candidateScores: true, pngUpscale: 1 };

describe('successive halving over noises', () => {
  it('keeps the top 1/eta at each rung; the plan is the exact account', async () => {
    const req = request({ ...sh(8), searchSolver: euler(8), return: ret });
    const { worker, rounds, result, plan } = await runOnFake(req);
    expect(rungSizes(8, 2, 2)).toEqual([8, 4, 2]);
    expect(plan.levels).toEqual({ sigmas: [0.75, 0.5], sizes: [8, 4, 2] });
    const batches = (m: string) => worker.calls.filter((c) => c.method === m).map((c) => c.batch);
    expect(batches('denoise')).toEqual([8, 4, 2]);
    expect(batches('xPrediction')).toEqual([8, 4]);
    // euler(8): 2 + 2 + 4 steps; x-predictions 8 + 4, of which the 4 and 2 survivors' next segments reuse theirs.
    expect(plan.searchNfes).toBe(String(8 * 2 + 4 * (2 - 1) + 2 * (4 - 1) + 8 + 4));
    type Ref = { handle: string; recipe: { xPrediction?: { sigma: number; parent: unknown } } };
    const solves = worker.calls.filter((c) => c.method === 'denoise').map((c) => c.detail as { inputs: Ref[]; firstPredictions?: Ref[]; sigmaFrom: number });
    expect(solves[0].firstPredictions).toBeUndefined();
    for (const s of solves.slice(1)) {
      expect(s.firstPredictions!.map((f) => [f.recipe.xPrediction!.sigma, f.recipe.xPrediction!.parent])).toEqual(s.inputs.map((x) => [s.sigmaFrom, x.recipe]));
    }
    expect(result.accounting!.searchNfes).toBe(plan.searchNfes);
    expect(rounds.map((r) => [r.sigma, r.kept.length, r.candidates.length])).toEqual([[0.75, 4, 8], [0.5, 2, 4], [0, 1, 2]]);
    // The survivors of a rung are its best by ensemble score, and they are the next rung's candidates.
    for (let i = 0; i < 2; i++) {
      const top = [...rounds[i].candidates].sort((a, b) => b.ensembleScore - a.ensembleScore).slice(0, rounds[i].kept.length).map((c) => c.id.split('.c')[1]);
      expect(rounds[i + 1].candidates.map((c) => c.id.split('.c')[1]).sort()).toEqual(top.sort());
    }
    expect(result.candidates).toHaveLength(14);
    expect(result.candidates.every((c) => c.scores.length > 0)).toBe(true);
    expect(worker.liveHandles()).toBe(0);
  });

  it('free_lookahead scores the captured x-prediction of each segment\'s last evaluation: no x-prediction NFE', async () => {
    const { worker, result, plan } = await runOnFake(request({ ...sh(8, { freeLookahead: true }), searchSolver: euler(8), return: ret }));
    expect(worker.countOf('xPrediction')).toBe(0);
    const captures = worker.calls.filter((c) => c.method === 'denoise').map((c) => (c.detail as { captureSigmas?: number[] }).captureSigmas);
    expect(captures).toEqual([[0.75], [0.5], undefined]);
    expect(plan.searchNfes).toBe(String(8 * 2 + 4 * 2 + 2 * 4));
    expect(result.accounting!.searchNfes).toBe(plan.searchNfes);
  });

  it('a segment that captures an x-prediction for a verifier does not reuse the rung\'s (it could fall on the reused level)', () => {
    const r = resolveRequest(request({ ...sh(8), searchSolver: euler(8) }), FAKE_CATALOG, DEFAULT_LIMITS);
    expect([0, 1, 2].map((s) => reusesRung(r, s))).toEqual([false, true, true]);
    const capturing = { ...r, xPredictionAt: 0.4 }; // on the last segment, [0, 0.5]
    expect([0, 1, 2].map((s) => reusesRung(capturing, s))).toEqual([false, true, false]);
    expect(successiveHalvingNfes(capturing, 8) - successiveHalvingNfes(r, 8)).toBe(2); // the 2 finishers pay their step
    const free = { ...r, successiveHalving: { ...r.successiveHalving!, freeLookahead: true } };
    expect([1, 2].map((s) => reusesRung(free, s))).toEqual([false, false]);
  });

  it('shrinks N to fit the budget, and refuses over budget otherwise', () => {
    const r = resolveRequest(request({ ...sh(64), searchSolver: euler(8), budgetNfes: '100', shrinkToFit: true }), FAKE_CATALOG, DEFAULT_LIMITS);
    const plan = planSearch(r, FAKE_CATALOG, DEFAULT_LIMITS);
    expect(plan.shrunk).toBe(true);
    expect(plan.shrunkAxis).toBe('successive_halving.n');
    expect(Number(plan.searchNfes)).toBeLessThanOrEqual(100);
    const bigger = planSearch(resolveRequest(request({ ...sh(plan.n + 1), searchSolver: euler(8) }), FAKE_CATALOG, DEFAULT_LIMITS));
    expect(Number(bigger.searchNfes)).toBeGreaterThan(100);
    expect(() => planSearch(resolveRequest(request({ ...sh(64), searchSolver: euler(8), budgetNfes: '100' }), FAKE_CATALOG, DEFAULT_LIMITS)))
      .toThrow(/budget_nfes/);
  });

  it('validates its parameters, naming the field', () => {
    const bad = (extra: object) => () => resolveRequest(request({ ...sh(4, extra) }), FAKE_CATALOG, DEFAULT_LIMITS);
    expect(bad({ rungs: [0.4, 0.7] })).toThrow(/successive_halving.rungs\[1\]/);
    expect(bad({ rungs: [1.2] })).toThrow(/successive_halving.rungs\[0\]/);
    expect(bad({ reduction: 1 })).toThrow(/successive_halving.reduction/);
    expect(bad({ n: 0 })).toThrow(/successive_halving.n/);
    expect(() => resolveRequest(request({ ...sh(4), verifiers: [{ name: 'self-supervised', weight: 1 }] }), FAKE_CATALOG, DEFAULT_LIMITS)).toThrow(/verifiers/);
  });

  it('resumes after any round bit-identically, and re-solves the chosen noises with the final solver', async () => {
    const whole = await resumeMatches(request({ ...sh(8), searchSolver: euler(8), finalSolver: euler(5), numOutputs: 2, return: ret }));
    expect(whole.result.outputs).toHaveLength(2);
    expect(whole.result.accounting!.finalNfes).toBe(String(2 * 5));
    expect(whole.result.outputs[0].recipe!.denoise!.parent!.seed).toBeDefined(); // re-solved from its noise
  });
});

import { FkPotential } from '../../gen/noisesearch/search/v1/search';
import { Solver } from '../../gen/noisesearch/worker/v1/worker';
import { DEFAULT_LIMITS } from '../catalog';
import { planSearch, resolveRequest } from '../plan';
import { FAKE_CATALOG } from '../testing/fake-worker';
import { request } from '../testing/requests';
import { runOnFake } from '../testing/run';
import { fkBoundaries, systematicResample, uniformOf } from './feynman-kac';
import { resumeMatches } from './testing-resume';

const euler = (steps: number, guidanceScale = 1) => ({ solver: Solver.SOLVER_EULER, steps, guidanceScale });
const fk = (k: number, extra = {}) => ({ feynmanKac: { k, potential: FkPotential.FK_POTENTIAL_MAX, resampleEvery: 2, ...extra } });
const ret = { png: true, rawTensor: false, candidateScores: true, pngUpscale: 1 };

describe('Feynman-Kac steering', () => {
  it('systematic resampling follows the weights with one uniform', () => {
    expect(systematicResample([1, 1, 1, 1], 0.5)).toEqual([0, 1, 2, 3]);
    expect(systematicResample([0, 0, 1, 0], 0.1)).toEqual([2, 2, 2, 2]);
    expect(systematicResample([3, 1, 0, 0], 0.2)).toEqual([0, 0, 0, 1]);
    const u = uniformOf('18446744073709551615');
    expect(u).toBeGreaterThanOrEqual(0);
    expect(u).toBeLessThan(1);
    expect(fkBoundaries(8, 3)).toEqual([3, 6, 8]);
  });

  it('K particles take stochastic steps, are weighed every resample_every steps, and the account equals the plan', async () => {
    const req = request({ ...fk(4), searchSolver: euler(8, 2), return: ret });
    const { worker, rounds, result, plan } = await runOnFake(req);
    const denoises = worker.calls.filter((c) => c.method === 'denoise').map((c) => c.detail as { solver: { solver: Solver; steps: number; eta: number; noiseSeed: string }; inputs: { handle: string }[] });
    expect(denoises.map((d) => [d.solver.solver, d.solver.steps, d.solver.eta])).toEqual(Array(4).fill([Solver.SOLVER_DDIM_ETA, 2, 1]));
    expect(new Set(denoises.map((d) => d.solver.noiseSeed)).size).toBe(4); // a fresh noise stream per segment
    expect(plan.levels!.sigmas).toEqual([0.75, 0.5, 0.25]);
    // 4 particles x 8 steps x 2 (guidance); the x-predictions weighed are captured from the solves: no NFE, no call.
    expect(plan.searchNfes).toBe(String(4 * 8 * 2));
    expect(worker.countOf('xPrediction')).toBe(0);
    const captures = worker.calls.filter((c) => c.method === 'denoise').map((c) => (c.detail as { captureSigmas?: number[] }).captureSigmas);
    expect(captures).toEqual([[0.75], [0.5], [0.25], undefined]);
    expect(result.accounting!.searchNfes).toBe(plan.searchNfes);
    expect(plan.finalNfes).toBe('0');
    expect(rounds).toHaveLength(4);
    expect(rounds.slice(0, 3).every((r) => r.ess! >= 1 && r.ess! <= 4)).toBe(true);
    expect(result.candidates).toHaveLength(16);
    // A resampled level duplicates a particle: the next segment lists one handle twice (no copy).
    const resampledAt = rounds.findIndex((r) => r.resampled);
    expect(resampledAt).toBeGreaterThanOrEqual(0);
    const handles = denoises[resampledAt + 1].inputs.map((i) => i.handle);
    expect(new Set(handles).size).toBeLessThan(handles.length);
    // The best final particle is returned as it is: its recipe is the stochastic chain.
    expect(result.outputs[0].recipe).toEqual(result.outputs[0].searchRecipe);
    expect(result.outputs[0].recipe!.denoise!.solver!.solver).toBe(Solver.SOLVER_DDIM_ETA);
    expect(worker.liveHandles()).toBe(0);
  });

  it('every potential runs; ess_threshold below the ESS never resamples', async () => {
    for (const potential of [FkPotential.FK_POTENTIAL_DIFFERENCE, FkPotential.FK_POTENTIAL_SUM]) {
      const { result, plan } = await runOnFake(request({ ...fk(3, { potential }), searchSolver: euler(6) }));
      expect(result.accounting!.searchNfes).toBe(plan.searchNfes);
    }
    const { rounds } = await runOnFake(request({ ...fk(3, { essThreshold: 1e-6 }), searchSolver: euler(6) }));
    expect(rounds.some((r) => r.resampled)).toBe(false);
  });

  it('shrinks K to fit; validates its fields', () => {
    const plan = planSearch(resolveRequest(request({ ...fk(50), searchSolver: euler(8), budgetNfes: '100', shrinkToFit: true }), FAKE_CATALOG, DEFAULT_LIMITS));
    expect([plan.k, plan.shrunkAxis, plan.searchNfes]).toEqual([12, 'feynman_kac.k', String(12 * 8)]) // 8 NFEs per particle;
    const bad = (extra: object) => () => resolveRequest(request({ ...fk(4, extra) }), FAKE_CATALOG, DEFAULT_LIMITS);
    expect(bad({ essThreshold: 0 })).toThrow(/feynman_kac.ess_threshold/);
    expect(bad({ eta: 1.5 })).toThrow(/feynman_kac.eta/);
    expect(bad({ lambda: -1 })).toThrow(/feynman_kac.lambda/);
    expect(bad({ potential: 9 })).toThrow(/feynman_kac.potential/);
    expect(() => resolveRequest(request({ ...fk(4), finalSolver: euler(3) }), FAKE_CATALOG, DEFAULT_LIMITS)).toThrow(/final_solver/);
  });

  it('resumes after any round bit-identically', async () => {
    await resumeMatches(request({ ...fk(4, { potential: FkPotential.FK_POTENTIAL_SUM }), searchSolver: euler(6), numOutputs: 2, return: ret }));
  });
});

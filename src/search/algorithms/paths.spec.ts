import { pathLevels } from '../nfe';
import { request } from '../testing/requests';
import { runOnFake } from '../testing/run';

describe('search over paths', () => {
  const paths = { paths: { n: 2, m: 3, sigmaStart: 0.5, deltaForward: 0.1, deltaBackward: 0.2, backwardSteps: 0 } };
  const levels = pathLevels(0.5, 0.1, 0.2); // 0.5 -> 0.4 -> 0.3 -> 0.2 -> 0.1 -> 0

  it('round 0 solves N noises to sigma_start; each round is one batched forward, denoise, x-prediction and score', async () => {
    const { worker, rounds } = await runOnFake(request(paths));
    const batches = (m: string) => worker.calls.filter((c) => c.method === m).map((c) => c.batch);
    expect(levels).toHaveLength(5);
    expect(batches('initialNoises')).toEqual([2]);
    expect(batches('denoise')).toEqual([2, 6, 6, 6, 6, 6]);
    expect(batches('forwardNoise')).toEqual([6, 6, 6, 6, 6]);
    expect(batches('xPrediction')).toEqual([6, 6, 6, 6]); // none at sigma 0: the clean samples are scored
    expect(batches('score')).toEqual([6, 6, 6, 6, 6, 1]); // then the held-out verifier on the returned output
    expect(rounds.map((r) => r.sigma)).toEqual([0.5, 0.4, 0.3, 0.2, 0.1, 0]);
    expect(rounds.slice(1).every((r) => r.kept.length === 2 || r.sigma === 0)).toBe(true);
    const denoises = worker.calls.filter((c) => c.method === 'denoise').map((c) => c.detail as { sigmaFrom: number; sigmaTo: number });
    expect(denoises.map((d) => [d.sigmaFrom, d.sigmaTo])).toEqual([[1, 0.5], ...levels.map((l) => [l.up, l.to])]);
  });

  it('children fork from the kept paths of the previous round, and the best final child is returned', async () => {
    const { rounds, result, worker } = await runOnFake(request({ ...paths, numOutputs: 2 }));
    for (let r = 2; r < rounds.length; r++) {
      const keptRecipes = rounds[r - 1].candidates.filter((c) => c.kept).map((c) => JSON.stringify(c.recipe));
      const parents = new Set(rounds[r].candidates.map((c) => JSON.stringify(c.recipe?.denoise?.parent?.forwardNoise?.parent)));
      expect([...parents].sort()).toEqual([...keptRecipes].sort());
    }
    const last = rounds[rounds.length - 1];
    const best = [...last.candidates].sort((a, b) => b.ensembleScore - a.ensembleScore).slice(0, 2).map((c) => c.id);
    expect(result.outputs.map((o) => o.candidateId)).toEqual(best);
    expect(result.outputs[0].recipe).toEqual(result.outputs[0].searchRecipe);
    expect(result.accounting?.finalNfes).toBe('0');
    expect(worker.liveHandles()).toBe(0);
  });

  it('explicit backward steps go to the worker', async () => {
    const { worker } = await runOnFake(request({ paths: { ...paths.paths, backwardSteps: 3 } }));
    const steps = worker.calls.filter((c) => c.method === 'denoise').map((c) => (c.detail as { solver: { steps: number } }).solver.steps);
    expect(steps.slice(1)).toEqual([3, 3, 3, 3, 3]);
  });
});

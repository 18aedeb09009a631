import { request } from '../testing/requests';
import { runOnFake } from '../testing/run';

describe('random search', () => {
  it('one round: one noise call, one denoise and one score for all N candidates', async () => {
    const { worker, rounds } = await runOnFake(request({ random: { n: 7 } }));
    const batches = (m: string) => worker.calls.filter((c) => c.method === m).map((c) => c.batch);
    expect(batches('initialNoises')).toEqual([7]);
    expect(batches('denoise')).toEqual([7]);
    expect(batches('score')).toEqual([7, 1]); // then the held-out verifier on the one returned output
    expect(rounds).toHaveLength(1);
    expect(rounds[0].candidates).toHaveLength(7);
  });

  it('returns the best candidates by the ensemble, best first, with matching ids', async () => {
    const { result, rounds } = await runOnFake(request({ random: { n: 9 }, numOutputs: 3 }));
    const bySupervised = [...rounds[0].candidates].sort((a, b) => b.scores[0].score - a.scores[0].score);
    expect(result.outputs.map((o) => o.candidateId)).toEqual(bySupervised.slice(0, 3).map((c) => c.id));
    expect(rounds[0].kept).toEqual(bySupervised.slice(0, 3).map((c) => c.id));
    expect(result.outputs[0].scores[0].score).toBe(bySupervised[0].scores[0].score);
  });

  it('noises derive from the request seed and the candidate index', async () => {
    const { rounds } = await runOnFake(request({ random: { n: 3 } }));
    const seeds = rounds[0].candidates.map((c) => c.recipe?.denoise?.parent?.seed?.seed);
    expect(new Set(seeds).size).toBe(3);
  });
});

import { DEFAULT_LIMITS } from '../catalog';
import { runSearch } from '../run-search';
import { FAKE_CATALOG, FakeWorker } from '../testing/fake-worker';
import { request } from '../testing/requests';
import { runOnFake } from '../testing/run';

const zo = (fields: { n?: number; k?: number; acceptNonImproving?: boolean; maxRejections?: number; tau?: number }) =>
  ({ zeroOrder: { n: 2, k: 6, acceptNonImproving: false, ...fields } });

// Round 1 scores 10 for every neighbour; later rounds score -index - round, so nothing beats round 1.
const round1Best = (_v: string, index: number, call: number) => (call === 1 ? 10 : -index - call);

describe('zero-order search', () => {
  it('one neighbours, one denoise and one score call per iteration, N samples each', async () => {
    const { worker, rounds } = await runOnFake(request(zo({ n: 3, k: 4 })));
    for (const m of ['neighbours', 'denoise', 'score'] as const) {
      // score: then the held-out verifier on the one returned output
      expect(worker.calls.filter((c) => c.method === m).map((c) => c.batch)).toEqual(m === 'score' ? [3, 3, 3, 3, 1] : [3, 3, 3, 3]);
    }
    expect(rounds.map((r) => r.round)).toEqual([1, 2, 3, 4]);
  });

  it('neighbours have cosine tau with the pivot and its norm', async () => {
    const { worker } = await runOnFake(request(zo({ n: 2, k: 1, tau: 0.8 })));
    // Rebuild: the fake keeps no released tensors, so check the formula directly on a fresh pivot.
    const [pivot] = await worker.initialNoises(['1']);
    const ns = await worker.neighbours(pivot, 0.8, ['2', '3']);
    const p = worker.vector(pivot);
    for (const n of ns) {
      const y = worker.vector(n);
      const dot = y.reduce((s, v, i) => s + v * p[i], 0);
      expect(Math.hypot(...y)).toBeCloseTo(Math.hypot(...p), 10);
      expect(dot / (Math.hypot(...y) * Math.hypot(...p))).toBeCloseTo(0.8, 10);
    }
  });

  it('rejects a non-improving iteration, redraws with fresh seeds, and restarts after max_rejections', async () => {
    const { rounds, worker, result } = await runOnFake(request(zo({ k: 5, maxRejections: 2 })), { scoreOverride: round1Best });
    expect(rounds.map((r) => r.note)).toEqual([
      'fresh pivot: best neighbour accepted',
      'rejected: no improvement; neighbourhood redrawn with fresh seeds',
      'rejected: no improvement; neighbourhood redrawn with fresh seeds; 2 rejections in a row: restart from a fresh pivot',
      'fresh pivot: best neighbour accepted',
      'rejected: no improvement; neighbourhood redrawn with fresh seeds',
    ]);
    expect(rounds.map((r) => r.kept)).toEqual([['r1.c0'], [], [], ['r4.c0'], []]);
    expect(worker.countOf('initialNoises')).toBe(2); // the first pivot and the restart
    const pivotOf = (round: number) => rounds[round - 1].candidates[0].recipe?.denoise?.parent?.neighbour?.pivot;
    const seedOf = (round: number) => rounds[round - 1].candidates[0].recipe?.denoise?.parent?.neighbour?.seed;
    expect(pivotOf(2)).toEqual(pivotOf(3)); // rejected: same pivot ...
    expect(seedOf(2)).not.toEqual(seedOf(3)); // ... fresh seeds
    expect(pivotOf(4)?.seed).toBeDefined(); // restarted from a fresh random noise
    expect(pivotOf(4)).not.toEqual(pivotOf(1));
    expect(pivotOf(5)?.neighbour).toBeDefined(); // round 4's accepted neighbour
    expect(result.outputs[0].candidateId).toBe('r1.c0'); // best over every scored candidate
    expect(result.accounting?.searchNfes).toBe(result.plan?.searchNfes);
    expect(worker.liveHandles()).toBe(0);
  });

  it('max_rejections 0 never restarts', async () => {
    const { rounds, worker } = await runOnFake(request(zo({ k: 6, maxRejections: 0 })), { scoreOverride: round1Best });
    expect(rounds.slice(1).every((r) => r.note.startsWith('rejected'))).toBe(true);
    expect(worker.countOf('initialNoises')).toBe(1);
  });

  it('accept_non_improving always moves to the best neighbour', async () => {
    const { rounds } = await runOnFake(request(zo({ k: 4, acceptNonImproving: true })), { scoreOverride: round1Best });
    expect(rounds.map((r) => r.kept.length)).toEqual([1, 1, 1, 1]);
    expect(rounds[1].note).toBe('accepted without improvement (accept_non_improving)');
  });

  it('moves when a neighbour improves on the pivot', async () => {
    const { rounds } = await runOnFake(request(zo({ k: 3 })), { scoreOverride: (_v, i, call) => call * 10 + i });
    expect(rounds.map((r) => r.note)).toEqual(['fresh pivot: best neighbour accepted', 'accepted: improvement', 'accepted: improvement']);
    expect(rounds.map((r) => r.kept)).toEqual([['r1.c1'], ['r2.c1'], ['r3.c1']]);
  });

  it('keeps worker memory bounded: at most pivot + num_outputs candidates alive between rounds', async () => {
    const alive: number[] = [];
    const worker: FakeWorker = new FakeWorker({
      beforeCall: (method) => {
        if (method === 'neighbours') alive.push(worker.liveHandles());
      },
    });
    await runSearch(worker, request(zo({ n: 4, k: 8 })), FAKE_CATALOG, DEFAULT_LIMITS, {}, new AbortController().signal);
    expect(alive).toHaveLength(8);
    expect(Math.max(...alive.slice(1))).toBeLessThanOrEqual(3); // pivot noise + best candidate's sample and noise
  });
});

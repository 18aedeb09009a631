import type { Round } from '../gen/noisesearch/search/v1/search';
import { Solver } from '../gen/noisesearch/worker/v1/worker';
import { DEFAULT_LIMITS } from './catalog';
import { runSearch } from './run-search';
import { FAKE_CATALOG, FakeWorker } from './testing/fake-worker';
import { request } from './testing/requests';

const euler = { solver: Solver.SOLVER_EULER, steps: 4, guidanceScale: 1 };

describe('previews of kept candidates, decoded at round time', () => {
  it.each([
    ['random', { random: { n: 3 }, numOutputs: 2 }],
    ['zero_order', { zeroOrder: { n: 2, k: 3, acceptNonImproving: true } }],
    ['paths', { paths: { n: 2, m: 2, sigmaStart: 0.5, deltaForward: 0.1, deltaBackward: 0.2, backwardSteps: 0 } }],
  ])('%s: every kept candidate of every round has one; the account is unchanged', async (_name, alg) => {
    const req = request({ ...alg, searchSolver: euler });
    const rounds: Round[] = [];
    const previews = new Map<string, Buffer>();
    const worker = new FakeWorker({ condition: req.condition });
    const withPreviews = await runSearch(worker, req, FAKE_CATALOG, DEFAULT_LIMITS, {
      onRound: (r) => rounds.push(r),
      onPreviews: (_r, ps) => ps.forEach((p) => previews.set(p.id, p.png)),
    }, new AbortController().signal);
    await new Promise((r) => setImmediate(r));
    const kept = rounds.flatMap((r) => r.kept);
    expect(kept.length).toBeGreaterThan(0);
    const got = [...previews.keys()].sort();
    if (_name === 'zero_order') {
      // A kept pivot whose sample the pool already released before the round was emitted has none.
      expect(got.length).toBeGreaterThan(0);
      expect(got.every((id) => kept.includes(id))).toBe(true);
    } else {
      expect(got).toEqual([...new Set(kept)].sort());
    }
    for (const png of previews.values()) expect(png.length).toBeGreaterThan(1); // the fake's "PNG": upscale byte + the sample
    const without = await runSearch(new FakeWorker({ condition: req.condition }), req, FAKE_CATALOG, DEFAULT_LIMITS, {}, new AbortController().signal);
    expect(withPreviews.accounting).toEqual(without.accounting);
    expect(withPreviews.outputs.map((o) => o.recipe)).toEqual(without.outputs.map((o) => o.recipe));
  });
});

import type { Round } from '../gen/noisesearch/search/v1/search';
import { FkPotential } from '../gen/noisesearch/search/v1/search';
import { Solver } from '../gen/noisesearch/worker/v1/worker';
import { DEFAULT_LIMITS } from './catalog';
import { runSearch } from './run-search';
import { FAKE_CATALOG, FakeWorker } from './testing/fake-worker';
import { request } from './testing/requests';

const euler = { solver: Solver.SOLVER_EULER, steps: 4, guidanceScale: 1 };

describe('previews of kept candidates, decoded at round time', () => {
  it.each([
    ['random', { random: { n: 3 }, numOutputs: 2 }],
    // accept_non_improving: round 2's pivot is worse than the pool's best (not kept in the pool).
    ['zero_order', { zeroOrder: { n: 2, k: 3, acceptNonImproving: true } }],
    ['zero_order, the dashboard e2e search', { zeroOrder: { n: 4, k: 8, acceptNonImproving: true } }],
    ['zero_order with a rejected round (nothing kept)', { zeroOrder: { n: 3, k: 6, acceptNonImproving: false } }],
    ['paths', { paths: { n: 2, m: 2, sigmaStart: 0.5, deltaForward: 0.1, deltaBackward: 0.2, backwardSteps: 0 } }],
    ['feynman_kac', { feynmanKac: { k: 4, potential: FkPotential.FK_POTENTIAL_MAX, resampleEvery: 2 } }],
    ['successive_halving', { successiveHalving: { n: 8, rungs: [0.75, 0.5], reduction: 2, freeLookahead: false } }],
    ['rollover_budget', { rolloverBudget: { nfes: '24', proposalsPerCall: 2 } }],
  ])('%s: every kept candidate the dashboard shows for a round has its own image; the account is unchanged', async (_name, alg) => {
    const req = request({ ...alg, searchSolver: euler });
    const rounds: Round[] = [];
    const previews = new Map<string, Buffer>();
    const worker = new FakeWorker({ condition: req.condition });
    const withPreviews = await runSearch(worker, req, FAKE_CATALOG, DEFAULT_LIMITS, {
      onRound: (r) => rounds.push(r),
      onPreviews: (_r, ps) => ps.forEach((p) => previews.set(p.id, p.png)),
    }, new AbortController().signal);
    await new Promise((r) => setImmediate(r));
    // What the dashboard shows for a round: its candidates that the round kept (dashboard.js, onRound).
    const shown = rounds.flatMap((r) => r.candidates.filter((c) => r.kept.includes(c.id)));
    expect(shown.length).toBeGreaterThan(0);
    expect([...previews.keys()].sort()).toEqual([...new Set(shown.map((c) => c.id))].sort());
    // Each is that candidate's sample (the fake's "PNG": upscale byte + the tensor), rebuilt here from its recipe.
    const check = new FakeWorker({ condition: req.condition });
    const expected = await check.decode(await check.materialize(shown.map((c) => c.recipe!)), 1);
    expect(shown.map((c) => previews.get(c.id))).toEqual(expected);
    const without = await runSearch(new FakeWorker({ condition: req.condition }), req, FAKE_CATALOG, DEFAULT_LIMITS, {}, new AbortController().signal);
    expect(withPreviews.accounting).toEqual(without.accounting);
    expect(withPreviews.outputs.map((o) => o.recipe)).toEqual(without.outputs.map((o) => o.recipe));
  });
});

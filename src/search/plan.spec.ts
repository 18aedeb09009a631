import type { SearchRequest } from '../gen/noisesearch/search/v1/search';
import { Solver } from '../gen/noisesearch/worker/v1/worker';
import { DEFAULT_LIMITS } from './catalog';
import { SearchError } from './errors';
import { planSearch, resolveRequest } from './plan';
import { FAKE_CATALOG } from './testing/fake-worker';
import { request } from './testing/requests';

const plan = (fields: Partial<SearchRequest>, limits = DEFAULT_LIMITS) =>
  planSearch(resolveRequest(request(fields), FAKE_CATALOG, limits), FAKE_CATALOG, limits);

function refusal(fields: Partial<SearchRequest>, limits = DEFAULT_LIMITS): SearchError {
  try {
    plan(fields, limits);
  } catch (e) {
    return e as SearchError;
  }
  throw new Error('expected a refusal');
}

const heun = (steps: number, guidanceScale = 1) => ({ solver: Solver.SOLVER_HEUN, steps, guidanceScale });
const euler = (steps: number, guidanceScale = 1) => ({ solver: Solver.SOLVER_EULER, steps, guidanceScale });

describe('planSearch: closed-form cost', () => {
  it('random: N * C (Heun 10 steps = 19 NFEs)', () => {
    const p = plan({ random: { n: 8 } });
    expect(p).toMatchObject({ algorithm: 'random', n: 8, searchNfes: '152', finalNfes: '0', totalNfes: '152', rounds: 1, nfesPerCandidate: '19', finalReusesSearch: true });
    expect(p.selectionVerifiers).toEqual(['supervised']);
    expect(p.reportedVerifiers).toEqual(['heldout']);
    expect(p.request?.model).toBe('sit-fmnist');
  });

  it('guidance != 1 doubles every NFE; Euler costs S', () => {
    expect(plan({ random: { n: 4 }, searchSolver: heun(10, 1.5) }).searchNfes).toBe('152');
    expect(plan({ random: { n: 4 }, searchSolver: euler(10) }).searchNfes).toBe('40');
    expect(plan({ random: { n: 4 }, searchSolver: euler(10, 4) }).searchNfes).toBe('80');
  });

  it('zero-order: K * N * C, final re-solve of num_outputs with the final solver (the paper: ZO-4 = 450 / 1850 / 6650)', () => {
    for (const [k, total] of [[1, 450], [8, 1850], [32, 6650]]) {
      const p = plan({ zeroOrder: { n: 4, k, acceptNonImproving: false }, searchSolver: euler(50), finalSolver: euler(250) });
      expect(p.searchNfes).toBe(String(k * 4 * 50));
      expect(p.finalNfes).toBe('250');
      expect(p.totalNfes).toBe(String(total));
      expect(p.rounds).toBe(k);
      expect(p.finalReusesSearch).toBe(false);
    }
    expect(plan({ zeroOrder: { n: 2, k: 3, acceptNonImproving: false }, numOutputs: 2, finalSolver: heun(25) }).finalNfes).toBe(String(2 * 49));
  });

  it('paths: N * C(1 -> sigma_start) + rounds of N * M * (C(back) + X), Heun 25 by hand', () => {
    // 1 -> 0.9: 3 steps, 6 NFEs. 17 rounds to sigma > 0: 3 steps (6) + 1 x-prediction = 7. Last round to 0: 3 steps = 5.
    const p = plan({ paths: { n: 2, m: 3, backwardSteps: 0 }, searchSolver: heun(25) });
    expect(p.searchNfes).toBe(String(2 * 6 + 2 * 3 * (17 * 7 + 5)));
    expect(p.rounds).toBe(19);
    expect(p).toMatchObject({ n: 2, m: 3, finalNfes: '0', finalReusesSearch: true });
  });

  it('paths with explicit backward steps and guidance', () => {
    // levels 0.5 -> (0.6) -> 0.2 -> (0.3) -> 0; Euler 10 steps, g = 3 doubles: start 5 steps = 10; rounds 2 steps: (4 + 2 x-pred), then 4.
    const p = plan({ paths: { n: 3, m: 2, sigmaStart: 0.5, deltaForward: 0.1, deltaBackward: 0.4, backwardSteps: 2 }, searchSolver: euler(10, 3) });
    expect(p.searchNfes).toBe(String(3 * 10 + 3 * 2 * (4 + 2 + 4)));
  });

  it('refuses a search over budget with the cost and the budget in the message', () => {
    const e = refusal({ random: { n: 8 }, budgetNfes: '100' });
    expect(e.code).toBe('RESOURCE_EXHAUSTED');
    expect(e.field).toBe('budget_nfes');
    expect(e.message).toContain('152');
    expect(e.message).toContain('100');
  });

  it('a budget exactly equal to the cost fits', () => {
    expect(plan({ random: { n: 8 }, budgetNfes: '152' }).searchNfes).toBe('152');
  });

  it('shrink_to_fit shrinks the scaling axis to the largest value that fits', () => {
    expect(plan({ random: { n: 10 }, budgetNfes: '100', shrinkToFit: true })).toMatchObject({ n: 5, searchNfes: '95', shrunk: true, shrunkAxis: 'random.n', requestedAxisValue: 10 });
    expect(plan({ zeroOrder: { n: 4, k: 10, acceptNonImproving: false }, budgetNfes: '200', shrinkToFit: true }))
      .toMatchObject({ n: 4, k: 2, searchNfes: '152', rounds: 2, shrunk: true, shrunkAxis: 'zero_order.k', requestedAxisValue: 10 });
    // paths defaults, Heun 10: start 2 x 2 = 4; per child 17 x 3 + 1 = 52
    expect(plan({ paths: { n: 2, m: 5, backwardSteps: 0 }, budgetNfes: '300', shrinkToFit: true }))
      .toMatchObject({ m: 2, searchNfes: String(4 + 2 * 2 * 52), shrunk: true, shrunkAxis: 'paths.m', requestedAxisValue: 5 });
    expect(plan({ random: { n: 3 }, budgetNfes: '100', shrinkToFit: true })).toMatchObject({ n: 3, shrunk: false, shrunkAxis: '' });
  });

  it('shrink_to_fit refuses when even 1 does not fit', () => {
    const e = refusal({ paths: { n: 2, m: 5, backwardSteps: 0 }, budgetNfes: '50', shrinkToFit: true });
    expect(e.code).toBe('RESOURCE_EXHAUSTED');
    expect(e.message).toContain('108');
    expect(e.message).toContain('50');
  });

  it('refuses too many candidates and outputs beyond the final candidates', () => {
    const e = refusal({ random: { n: 5000 } });
    expect(e).toMatchObject({ code: 'RESOURCE_EXHAUSTED', field: 'random.n' });
    expect(refusal({ zeroOrder: { n: 100, k: 50, acceptNonImproving: false } })).toMatchObject({ code: 'RESOURCE_EXHAUSTED', field: 'zero_order.k' });
    expect(refusal({ random: { n: 2 }, numOutputs: 3 })).toMatchObject({ code: 'INVALID_ARGUMENT', field: 'num_outputs' });
    expect(refusal({ random: { n: 10 }, numOutputs: 6, budgetNfes: '100', shrinkToFit: true })).toMatchObject({ field: 'num_outputs' });
  });
});

describe("the worker's per-request limit", () => {
  const limits = { ...DEFAULT_LIMITS, maxCandidates: 100_000 };

  it('refuses a round that would not fit one worker call, naming the scaling axis', () => {
    const over = FAKE_CATALOG.maxRequestSamples + 1;
    const e = refusal({ random: { n: over }, searchSolver: euler(1) }, limits);
    expect(e.code).toBe('RESOURCE_EXHAUSTED');
    expect(e.message).toContain(`random.n: a round sends ${over} samples`);
    const paths = refusal({ paths: { n: 2, m: FAKE_CATALOG.maxRequestSamples, backwardSteps: 0 }, searchSolver: euler(4) }, limits);
    expect(paths.message).toContain('paths.m: a round sends');
  });

  it('accepts the largest round that fits', () => {
    expect(plan({ random: { n: FAKE_CATALOG.maxRequestSamples }, searchSolver: euler(1) }, limits).n)
      .toBe(FAKE_CATALOG.maxRequestSamples);
  });
});

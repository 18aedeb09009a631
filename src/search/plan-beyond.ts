// Plans of the algorithms beyond the paper (issue 10), apart from plan.ts's linear cost model:
// successive halving's cost is not linear in N (floors at every rung), and rollover budget forcing's
// plan is an upper bound. Each cost is the algorithm file's own closed form (nfe.ts arithmetic).
//
// successive_halving: sum over segments of alive * C(segment) + sum over rungs of (alive - survivors) * X
//                     (a survivor's next segment reuses its rung x-prediction; with free_lookahead X = 0); axis N.
// feynman_kac:        K * S * g (stochastic steps; the x-predictions weighed are captured, free); axis K.
// rollover_budget:    at most `nfes` (upper bound); at least n0 * g (the initial_noises' x-predictions at
//                     sigma 1) + (S - 1) proposals of g; axis nfes.
// Final NFEs: successive_halving as random (re-solve num_outputs noises unless final = search solver);
// feynman_kac and rollover_budget return their searched samples (0).
import type { Plan } from '../gen/noisesearch/search/v1/search';
import { feynmanKacNfes, fkResampleSigmas } from './algorithms/feynman-kac';
import { rolloverMinimumNfes } from './algorithms/rollover-budget';
import { rungSizes, successiveHalvingNfes } from './algorithms/successive-halving';
import type { Catalog, Limits } from './catalog';
import { SearchError, invalid } from './errors';
import { accountedSolver, fullSolveNfes } from './nfe';
import { sameSolver, type ResolvedRequest } from './resolve';

interface Beyond {
  axisField: string;
  value: number;
  /** The least axis value that can run. */
  min: number;
  cost: (v: number) => number;
  candidates: (v: number) => number;
  roundBatch: (v: number) => number;
  finalCandidates: (v: number) => number;
  rounds: (v: number) => number;
}

function beyondOf(r: ResolvedRequest): Beyond | undefined {
  const S = r.searchSolver.steps;
  if (r.successiveHalving) {
    const h = r.successiveHalving;
    const sizes = (v: number) => rungSizes(v, h.rungs.length, h.reduction);
    return {
      axisField: 'successive_halving.n', value: h.n, min: 1, cost: (v) => successiveHalvingNfes(r, v),
      candidates: (v) => sizes(v).slice(0, -1).reduce((a, b) => a + b, 0), roundBatch: (v) => v,
      finalCandidates: (v) => sizes(v)[h.rungs.length], rounds: () => h.rungs.length + 1,
    };
  }
  if (r.feynmanKac) {
    const levels = fkResampleSigmas(r).length;
    return {
      axisField: 'feynman_kac.k', value: r.feynmanKac.k, min: 1, cost: (v) => feynmanKacNfes(r, v),
      candidates: (v) => v * (levels + 1), roundBatch: (v) => v, finalCandidates: (v) => v, rounds: () => levels + 1,
    };
  }
  if (r.rolloverBudget) {
    const b = r.rolloverBudget;
    const min = rolloverMinimumNfes(r);
    const n0 = b.initialNoises;
    // Proposals are at least 1 NFE each, after the n0 initial x-predictions (at least 1 NFE each): nfes - n0
    // bounds the proposals; with n0 > 1 the n0 initial noises are candidates too (their own round).
    return {
      axisField: 'rollover_budget.nfes', value: b.nfes, min, cost: (v) => v,
      candidates: (v) => (n0 > 1 ? n0 : 0) + Math.max(1, v - n0), roundBatch: () => Math.max(b.proposalsPerCall, n0),
      finalCandidates: () => 1, rounds: () => (n0 > 1 ? 1 : 0) + S - 1,
    };
  }
  return undefined;
}

/** The plan of a new algorithm, or undefined for the paper's three (plan.ts plans those). */
export function planBeyond(r: ResolvedRequest, catalog: Catalog | undefined, limits: Limits): Plan | undefined {
  const b = beyondOf(r);
  if (!b) return undefined;
  const requested = b.value;
  if (b.cost(b.min) > 0 && requested < b.min) {
    throw invalid(b.axisField, `(${requested}) is under the least that can run: ${b.min} (one proposal per step of the search solver's ${r.searchSolver.steps})`);
  }
  let value = requested;
  if (r.budgetNfes > 0 && b.cost(value) > r.budgetNfes) {
    if (!r.request.shrinkToFit) {
      throw new SearchError('RESOURCE_EXHAUSTED',
        `budget_nfes: the search costs ${b.cost(value)} NFEs, over the budget of ${r.budgetNfes} (set shrink_to_fit to shrink ${b.axisField})`, 'budget_nfes');
    }
    if (b.cost(b.min) > r.budgetNfes) {
      throw new SearchError('RESOURCE_EXHAUSTED', `budget_nfes: even ${b.axisField} = ${b.min} costs ${b.cost(b.min)} NFEs, over the budget of ${r.budgetNfes}`, 'budget_nfes');
    }
    // The cost is non-decreasing in the axis: the largest value that fits, by bisection.
    let lo = b.min;
    let hi = value;
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (b.cost(mid) <= r.budgetNfes) lo = mid;
      else hi = mid - 1;
    }
    value = lo;
  }
  const searchNfes = b.cost(value);
  if (searchNfes > limits.maxBudgetNfes) {
    throw new SearchError('RESOURCE_EXHAUSTED', `budget_nfes: the search costs ${searchNfes} NFEs, over the service limit of ${limits.maxBudgetNfes}`, 'budget_nfes');
  }
  if (b.candidates(value) > limits.maxCandidates) {
    throw new SearchError('RESOURCE_EXHAUSTED', `${b.axisField}: the search has ${b.candidates(value)} candidates, over the limit of ${limits.maxCandidates}`, b.axisField);
  }
  if (catalog?.maxRequestSamples && b.roundBatch(value) > catalog.maxRequestSamples) {
    throw new SearchError('RESOURCE_EXHAUSTED', `${b.axisField}: a round sends ${b.roundBatch(value)} samples in one worker call, over the worker's limit of ${catalog.maxRequestSamples}`, b.axisField);
  }
  if (r.numOutputs > b.finalCandidates(value)) {
    throw invalid('num_outputs', `(${r.numOutputs}) exceeds the ${b.finalCandidates(value)} final candidates of the search`);
  }
  const finalReusesSearch = !r.successiveHalving || sameSolver(r.searchSolver, r.finalSolver);
  const finalNfes = finalReusesSearch ? 0 : r.numOutputs * fullSolveNfes(accountedSolver(r.finalSolver, r.model.guidanceEmbedded));
  const shrunk = value !== requested;
  const sh = r.successiveHalving;
  return {
    algorithm: r.algorithm,
    n: sh ? value : 0,
    k: r.feynmanKac ? value : 0,
    m: 0,
    searchNfes: String(searchNfes),
    finalNfes: String(finalNfes),
    totalNfes: String(searchNfes + finalNfes),
    budgetNfes: String(r.budgetNfes),
    rounds: b.rounds(value),
    nfesPerCandidate: String(fullSolveNfes(accountedSolver(r.searchSolver, r.model.guidanceEmbedded))),
    shrunk,
    shrunkAxis: shrunk ? b.axisField : '',
    requestedAxisValue: shrunk ? requested : 0,
    finalReusesSearch,
    selectionVerifiers: r.selection.map((v) => v.name),
    reportedVerifiers: [...r.reported],
    request: r.request,
    ...(r.rolloverBudget ? { searchNfesUpperBound: true } : {}),
    ...(sh ? { levels: { sigmas: [...sh.rungs], sizes: rungSizes(value, sh.rungs.length, sh.reduction) } } : {}),
    ...(r.feynmanKac ? { levels: { sigmas: fkResampleSigmas(r), sizes: [] } } : {}),
  };
}

/** The effective request of a new algorithm after its plan (post-shrink), or undefined. */
export function effectiveBeyond(r: ResolvedRequest, plan: Plan): ResolvedRequest | undefined {
  if (r.successiveHalving) return { ...r, successiveHalving: { ...r.successiveHalving, n: plan.n } };
  if (r.feynmanKac) return { ...r, feynmanKac: { ...r.feynmanKac, k: plan.k } };
  if (r.rolloverBudget) return { ...r, rolloverBudget: { ...r.rolloverBudget, nfes: Number(plan.searchNfes) } };
  return undefined;
}

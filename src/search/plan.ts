// The closed-form NFE cost of a resolved request, and the budget decision (refuse or shrink).
//
// random:     N * C
// zero_order: K * N * C   (the pivot is never solved: the first iteration, and the first after a
//                          restart, accept their best neighbour unconditionally; paper: ZO-4 = 4 x 50 per iteration)
// paths:      N * C(1 -> sigma_start) + sum over rounds of N * M * (C(sigma + df -> sigma') + (sigma' > 0 ? X : 0))
// with C a solve under the step density rule (nfe.ts) and X one x-prediction.
// Final: random / zero_order re-solve num_outputs noises with final_solver (0 when it equals the
// search solver: the searched sample is reused); paths returns its searched samples (0).
import type { Plan, SearchRequest } from '../gen/noisesearch/search/v1/search';
import type { Catalog, Limits } from './catalog';
import { DEFAULT_LIMITS } from './catalog';
import { SearchError, invalid } from './errors';
import { effectiveBeyond, planBeyond } from './plan-beyond';
import { accountedSolver, fullSolveNfes, pathLevels, segmentNfes, xPredictionNfes } from './nfe';
import { resolveRequest, sameSolver, type ResolvedRequest } from './resolve';

export { resolveRequest } from './resolve';
export type { ResolvedRequest, AlgorithmName } from './resolve';

type Axis = 'n' | 'k' | 'm';

/** Cost of the search as a function of its scaling axis; linear in it, so shrinking is a division. */
interface CostModel {
  axis: Axis;
  axisField: string;
  value: number;
  fixed: number;   // NFEs that do not scale with the axis
  perUnit: number; // NFEs per unit of the axis
  rounds: (axisValue: number) => number;
  finalCandidates: (axisValue: number) => number;
  candidates: (axisValue: number) => number;
  roundBatch: (axisValue: number) => number; // samples in the largest single worker call of a round
}

function costModel(r: ResolvedRequest): CostModel {
  const search = accountedSolver(r.searchSolver, r.model.guidanceEmbedded);
  const c = fullSolveNfes(search);
  if (r.random) {
    const n = r.random.n;
    return { axis: 'n', axisField: 'random.n', value: n, fixed: 0, perUnit: c, rounds: () => 1, finalCandidates: (v) => v, candidates: (v) => v, roundBatch: (v) => v };
  }
  if (r.zeroOrder) {
    const { n, k } = r.zeroOrder;
    return {
      axis: 'k', axisField: 'zero_order.k', value: k, fixed: 0, perUnit: n * c, rounds: (v) => v,
      finalCandidates: (v) => v * n, candidates: (v) => v * n, roundBatch: () => n,
    };
  }
  const p = r.paths!;
  const levels = pathLevels(p.sigmaStart, p.deltaForward, p.deltaBackward);
  const x = xPredictionNfes(search.guidanceScale);
  const perChild = levels.reduce(
    (sum, l) => sum + segmentNfes(search, l.up, l.to, p.backwardSteps) + (l.to > 0 ? x : 0),
    0,
  );
  return {
    axis: 'm', axisField: 'paths.m', value: p.m,
    fixed: p.n * segmentNfes(search, 1, p.sigmaStart),
    perUnit: p.n * perChild,
    rounds: () => levels.length + 1, // round 0 solves the N starting noises to sigma_start
    finalCandidates: (v) => p.n * v,
    roundBatch: (v) => p.n * v,
    candidates: (v) => p.n + levels.length * p.n * v,
  };
}

export function planSearch(r: ResolvedRequest, catalog?: Catalog, limits: Limits = DEFAULT_LIMITS): Plan {
  const beyond = planBeyond(r, catalog, limits); // successive_halving, feynman_kac, rollover_budget
  if (beyond) return beyond;
  const cost = costModel(r);
  const requested = cost.value;
  let value = requested;
  const searchAt = (v: number) => cost.fixed + cost.perUnit * v;

  if (r.budgetNfes > 0 && searchAt(value) > r.budgetNfes) {
    if (!r.request.shrinkToFit) {
      throw new SearchError(
        'RESOURCE_EXHAUSTED',
        `budget_nfes: the search costs ${searchAt(value)} NFEs, over the budget of ${r.budgetNfes} (set shrink_to_fit to shrink ${cost.axisField})`,
        'budget_nfes',
      );
    }
    value = Math.floor((r.budgetNfes - cost.fixed) / cost.perUnit);
    if (value < 1) {
      throw new SearchError(
        'RESOURCE_EXHAUSTED',
        `budget_nfes: even ${cost.axisField} = 1 costs ${searchAt(1)} NFEs, over the budget of ${r.budgetNfes}`,
        'budget_nfes',
      );
    }
  }
  const searchNfes = searchAt(value);
  if (searchNfes > limits.maxBudgetNfes) {
    throw new SearchError('RESOURCE_EXHAUSTED', `budget_nfes: the search costs ${searchNfes} NFEs, over the service limit of ${limits.maxBudgetNfes}`, 'budget_nfes');
  }
  const candidates = cost.candidates(value);
  if (candidates > limits.maxCandidates) {
    throw new SearchError('RESOURCE_EXHAUSTED', `${cost.axisField}: the search has ${candidates} candidates, over the limit of ${limits.maxCandidates}`, cost.axisField);
  }
  // Every round is one batched worker call: it must fit the worker's per-request limit.
  const batch = cost.roundBatch(value);
  if (catalog?.maxRequestSamples && batch > catalog.maxRequestSamples) {
    throw new SearchError('RESOURCE_EXHAUSTED', `${cost.axisField}: a round sends ${batch} samples in one worker call, over the worker's limit of ${catalog.maxRequestSamples}`, cost.axisField);
  }
  if (r.numOutputs > cost.finalCandidates(value)) {
    throw invalid('num_outputs', `(${r.numOutputs}) exceeds the ${cost.finalCandidates(value)} final candidates of the search`);
  }

  const finalReusesSearch = r.algorithm === 'paths' || sameSolver(r.searchSolver, r.finalSolver);
  const finalNfes = finalReusesSearch ? 0 : r.numOutputs * fullSolveNfes(accountedSolver(r.finalSolver, r.model.guidanceEmbedded));
  const shrunk = value !== requested;
  return {
    algorithm: r.algorithm,
    n: cost.axis === 'n' ? value : (r.zeroOrder?.n ?? r.paths!.n),
    k: cost.axis === 'k' ? value : 0,
    m: cost.axis === 'm' ? value : 0,
    searchNfes: String(searchNfes),
    finalNfes: String(finalNfes),
    totalNfes: String(searchNfes + finalNfes),
    budgetNfes: String(r.budgetNfes),
    rounds: cost.rounds(value),
    nfesPerCandidate: String(fullSolveNfes(accountedSolver(r.searchSolver, r.model.guidanceEmbedded))),
    shrunk,
    shrunkAxis: shrunk ? cost.axisField : '', // named as errors name it: random.n, zero_order.k, paths.m
    requestedAxisValue: shrunk ? requested : 0,
    finalReusesSearch,
    selectionVerifiers: r.selection.map((v) => v.name),
    reportedVerifiers: [...r.reported],
    request: r.request,
  };
}

/**
 * The request as the search runs it: the plan's effective (post-shrink) value on the scaling axis.
 * The one resolved object the algorithm reads and the plan describes.
 */
export function effectiveRequest(r: ResolvedRequest, plan: Plan): ResolvedRequest {
  if (r.random) return { ...r, random: { ...r.random, n: plan.n } };
  if (r.zeroOrder) return { ...r, zeroOrder: { ...r.zeroOrder, k: plan.k } };
  if (r.paths) return { ...r, paths: { ...r.paths, m: plan.m } };
  return effectiveBeyond(r, plan) ?? r;
}

/** A request resolved once: the plan and the effective request that goes with it. */
export interface PreparedSearch {
  spec: ResolvedRequest;
  plan: Plan;
}

export function prepareSearch(request: SearchRequest, catalog: Catalog, limits: Limits): PreparedSearch {
  const resolved = resolveRequest(request, catalog, limits);
  const plan = planSearch(resolved, catalog, limits);
  return { spec: effectiveRequest(resolved, plan), plan };
}

// Validates a SearchRequest against the worker's catalog and fills every default.
// Every refusal names the request field at fault (proto spelling).
import {
  Ensemble,
  type ReturnOptions,
  type SearchRequest,
  type VerifierWeight,
} from '../gen/noisesearch/search/v1/search';
import { Solver, type Condition, type SolverSettings } from '../gen/noisesearch/worker/v1/worker';
import { findModel, findVerifier, type Catalog, type CatalogModel, type CatalogVerifier, type Limits } from './catalog';
import { SearchError, echo, invalid } from './errors';
import { pathLevels, type ResolvedSolver } from './nfe';
import { isUint64 } from './seeds';

export type AlgorithmName = 'random' | 'zero_order' | 'paths' | NewAlgorithmName;
/** The algorithms beyond the paper (issue 10): resolved by resolveNewAlgorithm below. */
export type NewAlgorithmName = 'successive_halving' | 'feynman_kac' | 'rollover_budget';
const NEW_ALGORITHMS: readonly AlgorithmName[] = ['successive_halving', 'feynman_kac', 'rollover_budget'];

export const DEFAULT_MODEL = 'sit-fmnist';
export const DEFAULTS = {
  tau: 0.95,
  maxRejections: 3,
  sigmaStart: 0.9,
  deltaForward: 0.05,
  deltaBackward: 0.1,
} as const;

/**
 * Bounds of the public API's strings and lists (documented in search.proto and the README). Checked
 * before anything else, so an oversized value is never stored, echoed in full, or spent on.
 */
export const BOUNDS = {
  /** UTF-8 bytes of SearchRequest.model, client_id and each verifier name. */
  nameBytes: 128,
  /** UTF-8 bytes of condition.prompt. */
  promptBytes: 4096,
  /** Entries of SearchRequest.verifiers. */
  verifiers: 16,
  /** UTF-8 bytes of a job id (Get, Watch, Cancel). */
  jobIdBytes: 128,
  /** ListJobsRequest.limit (0 = the default, 50). */
  listLimit: 1000,
  /** |guidance_scale| of a solver: [0, 100]. */
  maxGuidanceScale: 100,
  /** A verifier's weight: [0, 1e6] (weighted sums of at most 16 normalised scores stay finite). */
  maxWeight: 1e6,
  /** The smallest step of a paths level (sigma_start, delta_forward, delta_backward - delta_forward). */
  minPathsDelta: 1e-6,
} as const;

/** INVALID_ARGUMENT when a string is over its bound (UTF-8 bytes), naming the field. */
export function checkBytes(field: string, value: string, max: number): void {
  // Cheap first: a JS string of n code units holds at most 3n UTF-8 bytes.
  if (value.length * 3 <= max) return;
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes > max) throw invalid(field, `is ${bytes} bytes long; at most ${max} are allowed`);
}

/** The bounds of a SearchRequest's strings and lists, before anything looks at their content. */
function checkBounds(req: SearchRequest): void {
  checkBytes('model', req.model, BOUNDS.nameBytes);
  checkBytes('client_id', req.clientId, BOUNDS.nameBytes);
  if (req.condition?.prompt !== undefined) checkBytes('condition.prompt', req.condition.prompt, BOUNDS.promptBytes);
  if (req.verifiers.length > BOUNDS.verifiers) {
    throw invalid('verifiers', `has ${req.verifiers.length} entries; at most ${BOUNDS.verifiers} are allowed`);
  }
  req.verifiers.forEach((v, i) => checkBytes(`verifiers[${i}].name`, v.name, BOUNDS.nameBytes));
  checkBytes('seed', req.seed, 32);
  checkBytes('budget_nfes', req.budgetNfes, 32);
}

export interface ResolvedRandom { n: number }
export interface ResolvedZeroOrder { n: number; k: number; tau: number; acceptNonImproving: boolean; maxRejections: number }
export interface ResolvedPaths {
  n: number; m: number; sigmaStart: number; deltaForward: number; deltaBackward: number;
  /** 0 = the search solver's step density. */
  backwardSteps: number;
}

export interface ResolvedRequest {
  /** The request with every default filled in (Plan.request). */
  request: SearchRequest;
  algorithm: AlgorithmName;
  model: CatalogModel;
  condition: Condition;
  /** Verifiers that rank candidates, weight 0 already replaced by 1. */
  selection: VerifierWeight[];
  /** Held-out verifiers that are scored and reported but never rank. */
  reported: string[];
  ensemble: Ensemble;
  searchSolver: ResolvedSolver;
  finalSolver: ResolvedSolver;
  /** 0 = unlimited. */
  budgetNfes: number;
  seed: string;
  numOutputs: number;
  /** The level at which an x-prediction must be captured for some scored verifier. */
  xPredictionAt?: number;
  returnOptions: ReturnOptions;
  random?: ResolvedRandom;
  zeroOrder?: ResolvedZeroOrder;
  paths?: ResolvedPaths;
  successiveHalving?: ResolvedSuccessiveHalving;
  feynmanKac?: ResolvedFeynmanKac;
  rolloverBudget?: ResolvedRolloverBudget;
}

export function resolveRequest(req: SearchRequest, catalog: Catalog, limits: Limits): ResolvedRequest {
  checkBounds(req);
  const model = resolveModel(req.model, catalog);
  const condition = resolveCondition(req.condition, model);
  const algorithm = algorithmOf(req);
  const random = req.random ? resolveRandom(req.random.n) : undefined;
  const zeroOrder = req.zeroOrder ? resolveZeroOrder(req.zeroOrder) : undefined;
  const paths = req.paths ? resolvePaths(req.paths, limits) : undefined;

  const searchSolver = resolveSolver('search_solver', req.searchSolver, model.defaultSolver, limits);
  const finalSolver = resolveSolver('final_solver', req.finalSolver, searchSolver, limits);
  if (algorithm === 'paths' && !sameSolver(searchSolver, finalSolver)) {
    throw invalid('final_solver', 'must equal search_solver (or be unset) for paths: its outputs are the searched samples themselves');
  }
  const beyond = resolveNewAlgorithm(req, algorithm, searchSolver, finalSolver, limits);

  const { selection, reported } = resolveVerifiers(req, catalog, model, condition, algorithm);
  const xPredictionAt = captureLevel(catalog, [...selection.map((v) => v.name), ...reported]);

  const ensemble = req.ensemble === Ensemble.ENSEMBLE_UNSPECIFIED ? Ensemble.ENSEMBLE_RANK_AVERAGE : req.ensemble;
  if (![Ensemble.ENSEMBLE_RANK_AVERAGE, Ensemble.ENSEMBLE_ZSCORE_SUM, Ensemble.ENSEMBLE_MINMAX_SUM].includes(ensemble)) {
    throw invalid('ensemble', `(${echo(req.ensemble)}) is not a known ensemble method`);
  }

  const budgetNfes = resolveBudget(req.budgetNfes, limits);
  const seed = req.seed === '' ? '0' : req.seed;
  if (!isUint64(seed)) throw invalid('seed', `(${echo(req.seed)}) must be a uint64 in decimal`);

  const numOutputs = req.numOutputs === 0 ? 1 : req.numOutputs;
  if (!Number.isInteger(numOutputs) || numOutputs < 1 || numOutputs > limits.maxOutputs) throw invalid('num_outputs', `(${numOutputs}) must be at most ${limits.maxOutputs}`);

  const returnOptions = resolveReturn(req.return);

  const request: SearchRequest = {
    ...req,
    model: model.name,
    condition,
    verifiers: filledVerifiers(req, selection),
    ensemble,
    searchSolver,
    finalSolver,
    budgetNfes: String(budgetNfes),
    seed,
    numOutputs,
    return: returnOptions,
    clientId: req.clientId || 'anonymous',
    random: random ? { ...random } : undefined,
    zeroOrder: zeroOrder ? { ...zeroOrder } : undefined,
    paths: paths ? { ...paths } : undefined,
    ...beyond.request,
  };
  return {
    request, algorithm, model, condition, selection, reported, ensemble, searchSolver, finalSolver,
    budgetNfes, seed, numOutputs, xPredictionAt, returnOptions, random, zeroOrder, paths, ...beyond.resolved,
  };
}

export function sameSolver(a: ResolvedSolver, b: ResolvedSolver): boolean {
  return a.solver === b.solver && a.steps === b.steps && a.guidanceScale === b.guidanceScale;
}

function resolveModel(name: string, catalog: Catalog): CatalogModel {
  if (catalog.models.length === 0) throw new SearchError('FAILED_PRECONDITION', 'the worker serves no model', 'model');
  if (name === '') return findModel(catalog, DEFAULT_MODEL) ?? catalog.models[0];
  const model = findModel(catalog, name);
  if (!model) throw invalid('model', `(${echo(name)}) is not served; known: ${catalog.models.map((m) => m.name).join(', ')}`);
  return model;
}

function resolveCondition(c: Condition | undefined, model: CatalogModel): Condition {
  if (!c) return { unconditional: true };
  const set = [c.classLabel !== undefined, c.prompt !== undefined, c.unconditional !== undefined].filter(Boolean).length;
  if (set > 1) throw invalid('condition', 'must set exactly one of class_label, prompt, unconditional');
  if (c.classLabel !== undefined) {
    if (!Number.isInteger(c.classLabel) || c.classLabel < 0 || c.classLabel >= model.numClasses) {
      throw invalid('condition.class_label', `(${echo(c.classLabel)}) must be in [0, ${model.numClasses}) for model ${model.name}`);
    }
    return { classLabel: c.classLabel };
  }
  if (c.prompt !== undefined) {
    if (!model.acceptsPrompt) throw invalid('condition.prompt', `is not accepted by model ${model.name}`);
    return { prompt: c.prompt };
  }
  return { unconditional: true };
}

function algorithmOf(req: SearchRequest): AlgorithmName {
  const set: AlgorithmName[] = [];
  if (req.random) set.push('random');
  if (req.zeroOrder) set.push('zero_order');
  if (req.paths) set.push('paths');
  if (req.successiveHalving) set.push('successive_halving');
  if (req.feynmanKac) set.push('feynman_kac');
  if (req.rolloverBudget) set.push('rollover_budget');
  if (set.length === 0) throw invalid('algorithm', 'is required: set one of random, zero_order, paths, successive_halving, feynman_kac, rollover_budget');
  if (set.length > 1) throw invalid('algorithm', `must be exactly one, got ${set.join(' and ')}`);
  return set[0];
}

function positiveInt(field: string, v: number): number {
  if (!Number.isInteger(v) || v < 1) throw invalid(field, `(${echo(v)}) must be at least 1`);
  return v;
}

function resolveRandom(n: number): ResolvedRandom {
  return { n: positiveInt('random.n', n) };
}

function resolveZeroOrder(z: NonNullable<SearchRequest['zeroOrder']>): ResolvedZeroOrder {
  const tau = z.tau ?? DEFAULTS.tau;
  // tau = 1 makes every neighbour the pivot itself: nothing to search.
  if (!(tau > -1 && tau < 1)) throw invalid('zero_order.tau', `(${echo(tau)}) must be in (-1, 1)`);
  const maxRejections = z.maxRejections ?? DEFAULTS.maxRejections;
  if (!Number.isInteger(maxRejections) || maxRejections < 0) {
    throw invalid('zero_order.max_rejections', `(${echo(maxRejections)}) must be a non-negative integer`);
  }
  return {
    n: positiveInt('zero_order.n', z.n),
    k: positiveInt('zero_order.k', z.k),
    tau,
    acceptNonImproving: z.acceptNonImproving,
    maxRejections,
  };
}

function resolvePaths(p: NonNullable<SearchRequest['paths']>, limits: Limits): ResolvedPaths {
  const n = positiveInt('paths.n', p.n);
  const m = positiveInt('paths.m', p.m);
  const sigmaStart = p.sigmaStart ?? DEFAULTS.sigmaStart;
  const deltaForward = p.deltaForward ?? DEFAULTS.deltaForward;
  const deltaBackward = p.deltaBackward ?? DEFAULTS.deltaBackward;
  const d = BOUNDS.minPathsDelta;
  // sigma_start = 1 would solve nothing in round 0 and could not be noised further: the range is open at 1.
  if (!(sigmaStart >= d && sigmaStart < 1)) throw invalid('paths.sigma_start', `(${echo(sigmaStart)}) must be in [${d}, 1)`);
  if (!(deltaForward >= d && deltaForward < 1)) throw invalid('paths.delta_forward', `(${echo(deltaForward)}) must be in [${d}, 1)`);
  if (!(deltaBackward > deltaForward)) {
    throw invalid('paths.delta_backward', `(${echo(deltaBackward)}) must exceed paths.delta_forward (${echo(deltaForward)})`);
  }
  if (!(deltaBackward - deltaForward >= d) || !Number.isFinite(deltaBackward)) {
    throw invalid('paths.delta_backward', `(${echo(deltaBackward)}) must exceed paths.delta_forward (${echo(deltaForward)}) by at least ${d}`);
  }
  if (sigmaStart + deltaForward > 1 + 1e-9) {
    throw invalid('paths.delta_forward', `(${echo(deltaForward)}) plus paths.sigma_start (${echo(sigmaStart)}) must not exceed 1`);
  }
  if (!Number.isInteger(p.backwardSteps) || p.backwardSteps < 0 || p.backwardSteps > limits.maxSteps) {
    throw invalid('paths.backward_steps', `(${echo(p.backwardSteps)}) must be an integer in [0, ${limits.maxSteps}]`);
  }
  const levels = pathLevels(sigmaStart, deltaForward, deltaBackward, limits.maxSteps);
  if (levels.length > limits.maxSteps) {
    throw invalid('paths.delta_backward', `(${echo(deltaBackward)}) minus paths.delta_forward (${echo(deltaForward)}) is too small: over ${limits.maxSteps} rounds`);
  }
  // Every round must be one the worker can run: at least one round, noising strictly up (to at most 1),
  // then solving strictly down, ending at 0 (the levels are rounded: tiny deltas could collapse).
  if (levels.length === 0 || levels[levels.length - 1].to !== 0) {
    throw invalid('paths.sigma_start', `(${echo(sigmaStart)}) gives no round to search`);
  }
  for (const l of levels) {
    if (!(l.up > l.from && l.up <= 1)) {
      throw invalid('paths.delta_forward', `(${echo(deltaForward)}) must noise every level up: round from sigma ${l.from} reaches ${l.up}`);
    }
    if (!(l.to < l.from)) {
      throw invalid('paths.delta_backward', `(${echo(deltaBackward)}) must bring every round down: round from sigma ${l.from} ends at ${l.to}`);
    }
  }
  return { n, m, sigmaStart, deltaForward, deltaBackward, backwardSteps: p.backwardSteps };
}

function resolveSolver(field: string, s: SolverSettings | undefined, fallback: ResolvedSolver, limits: Limits): ResolvedSolver {
  const solver = s?.solver || fallback.solver;
  if (solver !== Solver.SOLVER_HEUN && solver !== Solver.SOLVER_EULER) {
    throw invalid(`${field}.solver`, `(${echo(s?.solver)}) is not a known solver`);
  }
  const steps = s?.steps || fallback.steps;
  if (!Number.isInteger(steps) || steps < 1 || steps > limits.maxSteps) {
    throw invalid(`${field}.steps`, `(${echo(steps)}) must be an integer in [1, ${limits.maxSteps}] (0 = the model's default, ${fallback.steps})`);
  }
  const guidanceScale = s?.guidanceScale ?? fallback.guidanceScale;
  if (!(guidanceScale >= 0 && guidanceScale <= BOUNDS.maxGuidanceScale)) {
    throw invalid(`${field}.guidance_scale`, `(${echo(guidanceScale)}) must be in [0, ${BOUNDS.maxGuidanceScale}]`);
  }
  return { solver, steps, guidanceScale };
}

function servesModel(v: CatalogVerifier, model: CatalogModel): boolean {
  return v.models.length === 0 || v.models.includes(model.name);
}

/** Why this verifier cannot judge this request, or undefined when it can. */
function unmetNeed(v: CatalogVerifier, condition: Condition, algorithm: AlgorithmName): { field: string; why: string } | undefined {
  if (v.needsClassLabel && condition.classLabel === undefined) {
    return { field: 'condition.class_label', why: `is required: verifier ${v.name} needs a class label` };
  }
  if (v.needsPrompt && condition.prompt === undefined) {
    return { field: 'condition.prompt', why: `is required: verifier ${v.name} needs a prompt` };
  }
  if (v.needsXPredictionAt !== undefined && NEW_ALGORITHMS.includes(algorithm)) {
    return { field: 'verifiers', why: `cannot include ${v.name} with ${algorithm}: it needs the x-prediction at sigma ${v.needsXPredictionAt} of one ODE trajectory` };
  }
  if (v.needsXPredictionAt !== undefined && algorithm === 'paths') {
    return {
      field: 'verifiers',
      why: `cannot include ${v.name} with paths: it needs the x-prediction at sigma ${v.needsXPredictionAt} of a full trajectory, and path search scores x-predictions`,
    };
  }
  return undefined;
}

function resolveVerifiers(
  req: SearchRequest, catalog: Catalog, model: CatalogModel, condition: Condition, algorithm: AlgorithmName,
): { selection: VerifierWeight[]; reported: string[] } {
  const listed: { v: CatalogVerifier; weight: number }[] = [];
  req.verifiers.forEach((w, i) => {
    const field = `verifiers[${i}].name`;
    const v = findVerifier(catalog, w.name);
    if (!v) throw invalid(field, `(${echo(w.name)}) is not a known verifier; known: ${catalog.verifiers.map((x) => x.name).join(', ')}`);
    if (!servesModel(v, model)) throw invalid(field, `(${echo(w.name)}) does not score samples of model ${model.name}`);
    if (listed.some((l) => l.v.name === v.name)) throw invalid(field, `(${echo(w.name)}) is listed twice`);
    if (!(w.weight >= 0 && w.weight <= BOUNDS.maxWeight)) {
      throw invalid(`verifiers[${i}].weight`, `(${echo(w.weight)}) must be in [0, ${BOUNDS.maxWeight}]`);
    }
    const unmet = unmetNeed(v, condition, algorithm);
    if (unmet) throw invalid(unmet.field, unmet.why);
    listed.push({ v, weight: w.weight === 0 ? 1 : w.weight });
  });

  let selection: VerifierWeight[];
  if (listed.length === 0) {
    selection = [{ name: defaultVerifier(catalog, model, condition, algorithm).name, weight: 1 }];
  } else {
    selection = listed.filter((l) => !l.v.heldOut || req.selectWithHeldOut).map((l) => ({ name: l.v.name, weight: l.weight }));
    if (selection.length === 0) throw invalid('verifiers', 'are all held out: set select_with_held_out or add a selection verifier');
  }
  // Held-out evaluators that can judge this request are always reported (the paper evaluates with verifiers not searched with).
  const reported = catalog.verifiers
    .filter((v) => v.heldOut && servesModel(v, model) && !unmetNeed(v, condition, algorithm))
    .map((v) => v.name)
    .filter((name) => !selection.some((s) => s.name === name));
  return { selection, reported };
}

/** Supervised: scores a sample against its condition (a class label's logit, a prompt's CLIPScore...). */
function supervised(v: CatalogVerifier): boolean {
  return v.needsClassLabel || v.needsPrompt;
}

/**
 * An empty verifier list means the model's supervised verifier (search.proto). When the request's
 * condition gives it nothing to judge against, the request is refused naming `condition`; only a
 * model without any supervised verifier falls back to its first self-supervised one.
 */
function defaultVerifier(catalog: Catalog, model: CatalogModel, condition: Condition, algorithm: AlgorithmName): CatalogVerifier {
  const own = catalog.verifiers.filter((v) => !v.heldOut && servesModel(v, model));
  const sup = own.filter(supervised);
  if (sup.length > 0) {
    const chosen = sup.find((v) => !unmetNeed(v, condition, algorithm));
    if (chosen) return chosen;
    const v = sup[0];
    throw invalid('condition', `must set ${v.needsClassLabel ? 'class_label' : 'prompt'}: with no verifiers listed, the model's supervised verifier ${v.name} judges the samples against it (or list verifiers that need no condition)`);
  }
  const chosen = own.find((v) => !unmetNeed(v, condition, algorithm));
  if (chosen) return chosen;
  throw invalid('verifiers', `is empty and model ${model.name} has no verifier that can judge this request`);
}

function captureLevel(catalog: Catalog, names: string[]): number | undefined {
  const levels = new Set(names.map((n) => findVerifier(catalog, n)?.needsXPredictionAt).filter((s): s is number => s !== undefined));
  if (levels.size > 1) throw invalid('verifiers', `need x-predictions at different levels (${[...levels].join(', ')}); use one`);
  return levels.size === 1 ? [...levels][0] : undefined;
}

/** What was asked for (or the default), so replaying the filled request selects the same way. */
function filledVerifiers(req: SearchRequest, selection: VerifierWeight[]): VerifierWeight[] {
  if (req.verifiers.length === 0) return selection.map((v) => ({ ...v }));
  return req.verifiers.map((v) => ({ name: v.name, weight: v.weight === 0 ? 1 : v.weight }));
}

function resolveBudget(budget: string, limits: Limits): number {
  const b = budget === '' ? '0' : budget;
  if (!/^(0|[1-9][0-9]*)$/.test(b)) throw invalid('budget_nfes', `(${echo(budget)}) must be a non-negative integer`);
  if (BigInt(b) > BigInt(limits.maxBudgetNfes)) throw invalid('budget_nfes', `(${echo(budget)}) must be at most ${limits.maxBudgetNfes}`);
  return Number(b);
}

function resolveReturn(r: ReturnOptions | undefined): ReturnOptions {
  const none = !r || (!r.png && !r.rawTensor && !r.candidateScores);
  const upscale = r?.pngUpscale || 1;
  if (!Number.isInteger(upscale) || upscale > 16) throw invalid('return.png_upscale', `(${echo(upscale)}) must be an integer in [1, 16]`);
  return { png: none ? true : r!.png, rawTensor: r?.rawTensor ?? false, candidateScores: r?.candidateScores ?? false, pngUpscale: upscale };
}

// ---- the algorithms beyond the paper (issue 10): defaults and checks, apart from the paper's three ----

export const NEW_DEFAULTS = {
  rungs: [0.7, 0.4],
  reduction: 2,
  lambda: 10,
  resampleEvery: 2,
  essThreshold: 1,
  eta: 1,
  proposalsPerCall: 4,
  initialNoises: 1,
} as const;

export interface ResolvedSuccessiveHalving { n: number; rungs: number[]; reduction: number; freeLookahead: boolean }
export enum FkPotentialKind { MAX = 'max', DIFFERENCE = 'difference', SUM = 'sum' }
export interface ResolvedFeynmanKac {
  k: number; potential: FkPotentialKind; lambda: number; resampleEvery: number; essThreshold: number; eta: number;
}
export interface ResolvedRolloverBudget {
  nfes: number; proposalsPerCall: number; eta: number;
  /** n0: the walk starts from the best of n0 noises by their x-predictions' reward at sigma 1 (1 = the one noise). */
  initialNoises: number;
}

function etaOf(field: string, eta: number | undefined): number {
  const e = eta ?? NEW_DEFAULTS.eta;
  if (!(e >= 0 && e <= 1)) throw invalid(field, `(${e}) must be in [0, 1]`);
  return e;
}

/** Checks and defaults of successive_halving, feynman_kac and rollover_budget (nothing for the others). */
function resolveNewAlgorithm(
  req: SearchRequest, algorithm: AlgorithmName, searchSolver: ResolvedSolver, finalSolver: ResolvedSolver, limits: Limits,
): { resolved: Pick<ResolvedRequest, 'successiveHalving' | 'feynmanKac' | 'rolloverBudget'>; request: Partial<SearchRequest> } {
  if (!NEW_ALGORITHMS.includes(algorithm)) return { resolved: {}, request: {} };
  if (algorithm !== 'successive_halving' && !sameSolver(searchSolver, finalSolver)) {
    throw invalid('final_solver', `must equal search_solver (or be unset) for ${algorithm}: its outputs are the searched (stochastic) samples themselves`);
  }
  if (req.successiveHalving) {
    const h = req.successiveHalving;
    const n = positiveInt('successive_halving.n', h.n);
    const rungs = h.rungs.length > 0 ? [...h.rungs] : [...NEW_DEFAULTS.rungs];
    rungs.forEach((s, i) => {
      if (!(s > 0 && s < 1)) throw invalid(`successive_halving.rungs[${i}]`, `(${s}) must be in (0, 1)`);
      if (i > 0 && !(s < rungs[i - 1])) throw invalid(`successive_halving.rungs[${i}]`, `(${s}) must be below the rung before it (${rungs[i - 1]})`);
    });
    if (rungs.length > limits.maxSteps) throw invalid('successive_halving.rungs', `has ${rungs.length} rungs, over ${limits.maxSteps}`);
    const reduction = h.reduction ?? NEW_DEFAULTS.reduction;
    if (!(reduction > 1 && Number.isFinite(reduction))) throw invalid('successive_halving.reduction', `(${reduction}) must be a finite number above 1`);
    const r = { n, rungs, reduction, freeLookahead: h.freeLookahead };
    return { resolved: { successiveHalving: r }, request: { successiveHalving: { ...r } } };
  }
  if (req.feynmanKac) {
    const f = req.feynmanKac;
    const k = positiveInt('feynman_kac.k', f.k);
    const potential = ({ 0: FkPotentialKind.MAX, 1: FkPotentialKind.MAX, 2: FkPotentialKind.DIFFERENCE, 3: FkPotentialKind.SUM } as Record<number, FkPotentialKind>)[f.potential];
    if (!potential) throw invalid('feynman_kac.potential', `(${f.potential}) is not a known potential`);
    const lambda = f.lambda ?? NEW_DEFAULTS.lambda;
    if (!(Number.isFinite(lambda) && lambda >= 0)) throw invalid('feynman_kac.lambda', `(${lambda}) must be a finite non-negative number`);
    const resampleEvery = f.resampleEvery || NEW_DEFAULTS.resampleEvery;
    if (!Number.isInteger(resampleEvery) || resampleEvery > limits.maxSteps) {
      throw invalid('feynman_kac.resample_every', `(${resampleEvery}) must be an integer in [0, ${limits.maxSteps}]`);
    }
    const essThreshold = f.essThreshold ?? NEW_DEFAULTS.essThreshold;
    if (!(essThreshold > 0 && essThreshold <= 1)) throw invalid('feynman_kac.ess_threshold', `(${essThreshold}) must be in (0, 1]`);
    const eta = etaOf('feynman_kac.eta', f.eta);
    const r = { k, potential, lambda, resampleEvery, essThreshold, eta };
    return { resolved: { feynmanKac: r }, request: { feynmanKac: { ...f, potential: f.potential || 1, lambda, resampleEvery, essThreshold, eta } } };
  }
  const b = req.rolloverBudget!;
  const nfes = Number(b.nfes);
  if (!Number.isSafeInteger(nfes) || nfes < 1) throw invalid('rollover_budget.nfes', `(${b.nfes}) must be at least 1`);
  if (nfes > limits.maxBudgetNfes) throw invalid('rollover_budget.nfes', `(${nfes}) is over the service limit of ${limits.maxBudgetNfes}`);
  const proposalsPerCall = b.proposalsPerCall || NEW_DEFAULTS.proposalsPerCall;
  if (proposalsPerCall > limits.maxCandidates) throw invalid('rollover_budget.proposals_per_call', `(${proposalsPerCall}) is over ${limits.maxCandidates}`);
  if (searchSolver.steps < 2) throw invalid('search_solver.steps', `(${searchSolver.steps}) must be at least 2 for rollover_budget (one proposal step and the last)`);
  const eta = etaOf('rollover_budget.eta', b.eta);
  const initialNoises = b.initialNoises || NEW_DEFAULTS.initialNoises;
  if (!Number.isInteger(initialNoises) || initialNoises < 1 || initialNoises > limits.maxCandidates) {
    throw invalid('rollover_budget.initial_noises', `(${echo(b.initialNoises)}) must be an integer in [0, ${limits.maxCandidates}] (0 = 1)`);
  }
  const r = { nfes, proposalsPerCall, eta, initialNoises };
  return { resolved: { rolloverBudget: r }, request: { rolloverBudget: { nfes: String(nfes), proposalsPerCall, eta, initialNoises } } };
}

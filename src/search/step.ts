/**
 * The algorithm contract: the algorithm decides, the runner executes (issue 10, part 1).
 *
 * An algorithm is a pure step function over a JSON-safe state, in the shape of vLLM's
 * EngineCore.step (schedule -> execute -> update) and of k-diffusion's pure samplers:
 *
 *   state = algo.init(spec)
 *   loop:
 *     p = algo.propose(state, spec)            // schedule: the next batch of worker actions, or done
 *     if p.done: return p.chosen               // the runner finalizes and packages
 *     results = runner.execute(p.actions)      // execute: batched, accounted worker calls
 *     { state, round } = algo.observe(state, spec, results)   // update
 *     if round: runner emits it with the checkpoint, which IS `state`
 *
 * Rules for an algorithm (one file in algorithms/, one line in registry.ts):
 *  - `init`, `propose` and `observe` are pure: no I/O, no clock, no randomness, no mutation of their
 *    arguments. Every seed comes from `deriveSeed(spec.seed, ...labels)` (seeds.ts); every ranking from
 *    `combine`/`rankOrder` (ensemble.ts) over `spec.selection`.
 *  - The state is JSON-safe (checkpoint.ts encodes it, NaN/inf included): numbers, strings, arrays,
 *    plain objects, and worker tensors as `SavedRef` ({handle, recipe}) exactly as the runner gave them.
 *    `SavedRef`s are the only tensors an algorithm holds. It never releases anything: after each step
 *    the runner releases every tensor that the new state (or the done value) no longer references.
 *    Resampling = listing the same `SavedRef` several times (no copy on the worker).
 *  - After a crash the search continues from the last committed state: `propose(state)` must do
 *    exactly what it would have done uninterrupted (the runner rebuilds missing tensors from their
 *    recipes, bit-identically, counting those NFEs as recovery).
 *  - `spec` is the request resolved ONCE with the plan's effective (post-shrink) parameters
 *    (`effectiveRequest` in plan.ts): read N, K, M from it, never from the raw request.
 *  - At most one round event per step (it is committed with the state after the step).
 *
 * The runner (runner.ts) owns everything else, once: the NFE ledger (every action is reserved
 * against the plan and budget before it runs, then charged with what the worker reports), verifier
 * calls and time, round events (nfes_spent, verifier flags, recipes), the candidate table, the
 * checkpoint, handle lifetimes, cancellation between steps, recovery after worker faults, and the final
 * re-solve, scoring and packaging of the chosen candidates.
 */
import type { Round } from '../gen/noisesearch/search/v1/search';
import type { ResolvedSolver } from './nfe';
import type { SavedRef } from './checkpoint';
import type { ResolvedRequest } from './resolve';

/** The resolved request with the effective (post-shrink) axis values: what an algorithm reads. */
export type SearchSpec = ResolvedRequest;

/** An action's input tensor: one the state holds, or output `index` of an earlier action of the same proposal. */
export type Input = SavedRef | { of: string; index: number; capture?: boolean };

export function outputOf(of: string, index: number): Input {
  return { of, index };
}

/** The x-prediction captured by solve action `of` for its output `index`. */
export function captureOf(of: string, index: number): Input {
  return { of, index, capture: true };
}

interface ActionBase {
  /** Unique within a proposal; names the action's results. */
  id: string;
  /** A human-readable label for budget errors and logs ("zero_order round 2: 4 neighbours"). */
  what?: string;
}

/** Fresh sigma = 1 noises, one per seed (free). */
export interface NoisesAction extends ActionBase { kind: 'noises'; seeds: string[] }

/** Neighbours of a pivot at cosine tau, one per seed (free). */
export interface NeighboursAction extends ActionBase { kind: 'neighbours'; pivot: Input; tau: number; seeds: string[] }

/** Exact forward noising sigmaFrom -> sigmaTo, one seed per input (free). */
export interface ForwardAction extends ActionBase { kind: 'forward'; inputs: Input[]; sigmaFrom: number; sigmaTo: number; seeds: string[] }

/**
 * One batched solve sigmaFrom -> sigmaTo (search phase, accounted). Default: the search solver at its
 * step density (nfe.ts). `capture`: also return the x-prediction at the request's capture level when it
 * lies on the segment (results.captures). `releaseInputs`: the worker frees the inputs (they must not
 * be in the next state). `stochastic`: a stochastic segment (eta and one noise seed per input and
 * step) for samplers that re-noise (FK steering); the worker side and its NFE rule come with the
 * solver that uses it (nfe.ts is the one place that counts).
 */
export interface SolveAction extends ActionBase {
  kind: 'solve';
  inputs: Input[];
  sigmaFrom: number;
  sigmaTo: number;
  steps?: number;
  capture?: boolean;
  /**
   * Capture at this level instead of the request's (feynman_kac): the worker takes the nearest level the
   * solver evaluates, so the x-prediction costs no NFE (a segment's end gives its last step's start).
   */
  captureAt?: number;
  releaseInputs?: boolean;
  /**
   * One per input: that input's x-prediction at sigmaFrom with the search guidance (an earlier
   * 'xprediction' action's output). The first step reuses it as its evaluation: the lookahead that judged
   * the input costs the segment nothing more (nfe.ts: one x-prediction fewer per input).
   */
  firstPredictions?: Input[];
  /** Another solver than the search solver for this segment (its NFEs must be countable in nfe.ts). */
  solver?: ResolvedSolver;
  stochastic?: { eta: number; seeds: string[] };
}

/** One batched x-prediction at sigma with the search guidance (accounted: one evaluation). */
export interface XPredictionAction extends ActionBase { kind: 'xprediction'; inputs: Input[]; sigma: number }

/**
 * Selection scores of samples (clean samples, or x-predictions at an intermediate sigma). The runner
 * scores the selection verifiers, plus the held-out ones when the request asks for every candidate's
 * scores (return.candidate_scores): results.scores[verifier][i] belongs to samples[i].
 */
export interface ScoreAction extends ActionBase { kind: 'score'; samples: Input[]; xPredictions?: Input[] }

export type Action = NoisesAction | NeighboursAction | ForwardAction | SolveAction | XPredictionAction | ScoreAction;

/** What one action produced. */
export interface ActionResult {
  /** noises, neighbours, forward, solve, xprediction: one per input / seed, in order. */
  outputs: SavedRef[];
  /** solve with capture: the x-prediction of outputs[i] (absent when the level is not on the segment). */
  captures?: SavedRef[];
  /** score: raw[verifier][i]. */
  scores?: Record<string, number[]>;
}

export type Results = Record<string, ActionResult>;

/** A candidate as an algorithm reports it in a round (the runner adds verifier flags and the recipe). */
export interface RoundCandidate {
  id: string;
  round: number;
  /** The tensor whose recipe the candidate table shows. */
  sample: SavedRef;
  scores: Record<string, number>;
  ensembleScore: number;
  kept: boolean;
}

/** A round event as an algorithm reports it; the runner adds nfes_spent and the proto shape. */
export interface RoundOut {
  round: number;
  sigma: number;
  /** Raw scores of the best candidate so far (empty before anything is scored). */
  best: Record<string, number>;
  kept: string[];
  candidates: RoundCandidate[];
  note: string;
  /** Algorithm-specific progress fields of the round event (feynman_kac's ESS, rollover_budget's share). */
  extra?: Pick<Round, 'ess' | 'resampled' | 'stepShareNfes' | 'proposals'>;
}

/** A returned candidate: the runner re-solves `noise` with the final solver, unless the plan reuses the search. */
export interface Chosen {
  id: string;
  round: number;
  sample: SavedRef;
  noise?: SavedRef;
  xPrediction?: SavedRef;
  scores: Record<string, number>;
}

export type Proposal = { done: false; actions: Action[] } | { done: true; chosen: Chosen[] };

export interface Observation<S> {
  state: S;
  round?: RoundOut;
}

export interface StepAlgorithm<S = unknown> {
  readonly name: string;
  init(spec: SearchSpec): S;
  propose(state: S, spec: SearchSpec): Proposal;
  observe(state: S, spec: SearchSpec, results: Results): Observation<S>;
}

export function candidateId(round: number, index: number): string {
  return `r${round}.c${index}`;
}

/** raw[verifier][i] -> per-candidate records. */
export function rowsOf(raw: Record<string, number[]>, count: number): Record<string, number>[] {
  return Array.from({ length: count }, (_, i) => Object.fromEntries(Object.entries(raw).map(([v, col]) => [v, col[i]])));
}

/** Per-candidate records -> raw[verifier][i]. */
export function columnsOf(rows: Record<string, number>[]): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const row of rows) for (const [v, s] of Object.entries(row)) (out[v] ??= []).push(s);
  return out;
}

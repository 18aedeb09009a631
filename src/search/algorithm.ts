// The one small interface every search algorithm implements; a new algorithm is one new file
// in algorithms/ plus one line in registry.ts.
import type { Candidate, Plan, Round, VerifierScore } from '../gen/noisesearch/search/v1/search';
import type { NfeLedger } from './budget';
import type { AlgorithmResume, SavedCandidate, SavedRef } from './checkpoint';
import type { ResolvedRequest } from './resolve';
import type { TensorRef, WorkerPort } from './worker-port';

/** A candidate that has been solved and scored, with the handles still needed to return it. */
export interface ScoredCandidate {
  id: string;
  round: number;
  /** The searched sample (clean, sigma = 0). */
  sample: TensorRef;
  /** The sigma = 1 starting noise, to re-solve with the final settings; absent for paths. */
  noise?: TensorRef;
  /** The x-prediction captured on its trajectory, for verifiers that need one. */
  xPrediction?: TensorRef;
  /** Raw score per verifier (selection and reported). */
  scores: Record<string, number>;
}

export interface AlgorithmOutcome {
  /** Best first, num_outputs of them. */
  chosen: ScoredCandidate[];
  /** Every candidate of every round, for the candidate table. */
  candidates: Candidate[];
}

export interface Scored {
  /** raw[verifier][i] belongs to samples[i]. */
  raw: Record<string, number[]>;
  /** The selection score of each sample within this batch (higher is better). */
  combined: number[];
}

export interface SolveOptions {
  /** Explicit step count for this segment; default the search solver's step density. */
  steps?: number;
  /** Capture the x-prediction at the request's capture level (when it lies on the segment). */
  capture?: boolean;
  releaseInputs?: boolean;
}

export interface Solved {
  outputs: TensorRef[];
  /** xPredictions[j] belongs to outputs[j], when captured. */
  xPredictions?: TensorRef[];
}

export interface SearchContext {
  readonly port: WorkerPort;
  readonly request: ResolvedRequest;
  readonly plan: Plan;
  readonly ledger: NfeLedger;
  readonly signal: AbortSignal;
  /** A seed derived from the request seed and these labels. */
  seed(...labels: (string | number)[]): string;
  /** One batched, accounted search solve from sigmaFrom to sigmaTo with the search solver. */
  solve(inputs: TensorRef[], sigmaFrom: number, sigmaTo: number, what: string, opts?: SolveOptions): Promise<Solved>;
  /** One batched, accounted x-prediction at sigma with the search guidance. */
  xPrediction(inputs: TensorRef[], sigma: number, what: string): Promise<TensorRef[]>;
  /** Scores with selection + reported verifiers in one call; `combined` uses the selection verifiers only. */
  scoreForSelection(samples: TensorRef[], xPredictions?: TensorRef[]): Promise<Scored>;
  /** The selection score of each row of raw scores (one combine over them all). */
  combine(raw: Record<string, number[]>): number[];
  /** Every scored verifier of a candidate, selection first, with held-out flags. */
  verifierScores(scores: Record<string, number>): VerifierScore[];
  /**
   * Emits a round with the algorithm's state after it (JSON-safe: recipes via saveRef/saveCandidate,
   * scores, counters), which is committed with the round so that `run(ctx, resume)` can continue.
   */
  emitRound(round: Round, state: unknown): void;
  /** A tensor from a checkpoint (rebuilt from its recipe on the worker when first used). */
  restore(saved: SavedRef): TensorRef;
  /** A candidate from a checkpoint; without saved handles its refs are placeholders that must not be used. */
  restoreCandidate(saved: SavedCandidate): ScoredCandidate;
  /** Throws CANCELLED when the signal has fired; algorithms call it between rounds. */
  checkCancelled(): void;
  /** Releases handles once; repeated or undefined refs are ignored. */
  release(refs: (TensorRef | undefined)[]): Promise<void>;
}

export interface SearchAlgorithm {
  readonly name: string;
  /** Runs the search; with `resume`, continues after `resume.round` from the state emitted with it. */
  run(ctx: SearchContext, resume?: AlgorithmResume): Promise<AlgorithmOutcome>;
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

export function toCandidate(ctx: SearchContext, c: ScoredCandidate, ensembleScore: number, kept: boolean): Candidate {
  return {
    id: c.id,
    round: c.round,
    scores: ctx.verifierScores(c.scores),
    ensembleScore,
    kept,
    recipe: c.sample.recipe,
  };
}

// What a search commits after each round so that it can continue after a crash: small and
// JSON-safe (recipes, scores, counters; no tensors). The service layer stores it (in the same
// transaction as the round's event); the search core never touches storage.
import { Recipe } from '../gen/noisesearch/worker/v1/worker';
import type { Round } from '../gen/noisesearch/search/v1/search';
import type { ScoredCandidate } from './algorithm';
import type { TensorRef } from './worker-port';

export const CHECKPOINT_VERSION = 1;

/** A worker tensor in a checkpoint: its handle as the search knew it and the recipe that rebuilds it. */
export interface SavedRef {
  handle: string;
  /** Recipe.toJSON */
  recipe: unknown;
}

export interface SavedCandidate {
  id: string;
  round: number;
  scores: Record<string, number>;
  /** Absent when the candidate's handles were already released (kept for ranking only). */
  sample?: SavedRef;
  noise?: SavedRef;
  xPrediction?: SavedRef;
}

export interface SearchCheckpoint {
  version: number;
  algorithm: string;
  /** Round.round of the round just committed. */
  round: number;
  /** Round events emitted so far (this one included). */
  rounds: number;
  /** The plan's search NFEs when the checkpoint was taken: a resume under a different plan is refused. */
  plannedSearchNfes: number;
  ledger: { searchNfes: number; verifierCalls: number; recoveryNfes: number };
  workerCalls: number;
  /** The algorithm's own state (JSON-safe). */
  state: unknown;
}

/** Where a resumed search starts: its last checkpoint and the round events committed with it, in order. */
export interface ResumePoint {
  checkpoint: SearchCheckpoint;
  rounds: Round[];
}

/** What an algorithm is given to continue from. */
export interface AlgorithmResume<S = unknown> {
  round: number;
  state: S;
  /** The candidate table of the rounds already done. */
  rounds: Round[];
}

export function saveRef(ref: TensorRef): SavedRef {
  return { handle: ref.handle, recipe: Recipe.toJSON(ref.recipe) };
}

export function savedRecipe(saved: SavedRef): Recipe {
  return Recipe.fromJSON(saved.recipe);
}

export function saveCandidate(c: ScoredCandidate, withHandles = true): SavedCandidate {
  return {
    id: c.id,
    round: c.round,
    scores: c.scores,
    ...(withHandles ? { sample: saveRef(c.sample) } : {}),
    ...(withHandles && c.noise ? { noise: saveRef(c.noise) } : {}),
    ...(withHandles && c.xPrediction ? { xPrediction: saveRef(c.xPrediction) } : {}),
  };
}

/** JSON with the numbers JSON cannot carry (NaN, +-Infinity, -0) kept exactly. */
export function encodeCheckpoint(c: SearchCheckpoint): string {
  return JSON.stringify(c, (_key, v) => (typeof v === 'number' && (!Number.isFinite(v) || Object.is(v, -0)) ? { $num: Object.is(v, -0) ? '-0' : String(v) } : v));
}

export function decodeCheckpoint(text: string): SearchCheckpoint {
  const c = JSON.parse(text, (_key, v) =>
    v !== null && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 1 && typeof v.$num === 'string' ? Number(v.$num) : v,
  ) as SearchCheckpoint;
  if (c.version !== CHECKPOINT_VERSION) throw new Error(`checkpoint version ${c.version} is not ${CHECKPOINT_VERSION}`);
  return c;
}

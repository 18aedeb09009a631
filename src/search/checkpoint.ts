// What a search commits after each round so that it can continue after a crash: small and
// JSON-safe (recipes, scores, counters; no tensors). The algorithm's state IS the checkpoint
// (step.ts); the service layer stores it (in the same transaction as the round's event); the search
// core never touches storage.
import { Recipe } from '../gen/noisesearch/worker/v1/worker';
import type { Round } from '../gen/noisesearch/search/v1/search';
import type { TensorRef } from './worker-port';

/** 2: the state of a step algorithm (step.ts); version 1 states (before the contract) are refused. */
export const CHECKPOINT_VERSION = 2;

/** A worker tensor in a checkpoint: its handle as the search knew it and the recipe that rebuilds it. */
export interface SavedRef {
  handle: string;
  /** Recipe.toJSON */
  recipe: unknown;
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
  ledger: { searchNfes: number; verifierCalls: number; recoveryNfes: number; verifierSeconds?: number };
  workerCalls: number;
  /** The algorithm's state after the round (JSON-safe). */
  state: unknown;
}

/** Where a resumed search starts: its last checkpoint and the round events committed with it, in order. */
export interface ResumePoint {
  checkpoint: SearchCheckpoint;
  rounds: Round[];
}

export function saveRef(ref: TensorRef): SavedRef {
  return { handle: ref.handle, recipe: Recipe.toJSON(ref.recipe) };
}

export function savedRecipe(saved: SavedRef): Recipe {
  return Recipe.fromJSON(saved.recipe);
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

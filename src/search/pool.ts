// The output pool of a multi-round search, as pure functions over JSON-safe state: every candidate
// scored so far (for the ranking), and the worker tensors of the running best `keep` only, so that
// worker memory stays bounded by `keep`, not by the number of candidates (the runner releases what
// the state no longer references). The ranking is one ensemble combine over every candidate so far.
// With rank or normalised ensembles of several verifiers, a new candidate can reorder older ones; a
// candidate whose tensors were already dropped cannot come back, so the outputs are the best of those
// held (exact for a single selection verifier).
import { combine, rankOrder } from './ensemble';
import type { SearchSpec, Chosen } from './step';
import { columnsOf } from './step';
import type { SavedRef } from './checkpoint';

/** A pool entry: a scored candidate; its tensors are present while it is held. */
export interface PoolEntry {
  id: string;
  round: number;
  scores: Record<string, number>;
  held: boolean;
  sample?: SavedRef;
  noise?: SavedRef;
  xPrediction?: SavedRef;
}

export interface PoolState {
  all: PoolEntry[];
}

export const emptyPool = (): PoolState => ({ all: [] });

/** Every candidate so far, best first. */
export function ranked(pool: PoolState, spec: SearchSpec): PoolEntry[] {
  if (pool.all.length === 0) return [];
  const combined = combine(columnsOf(pool.all.map((c) => c.scores)), spec.selection, spec.ensemble);
  return rankOrder(combined).map((i) => pool.all[i]);
}

export function find(pool: PoolState, id: string): PoolEntry | undefined {
  return pool.all.find((c) => c.id === id);
}

/** The best `keep` held candidates. */
export function chosen(pool: PoolState, spec: SearchSpec, keep: number): PoolEntry[] {
  return ranked(pool, spec).filter((c) => c.held).slice(0, keep);
}

/** The pool with `cands` added and every held candidate outside the best `keep` dropped (its tensors let go). */
export function addAndSweep(pool: PoolState, cands: Chosen[], spec: SearchSpec, keep: number): PoolState {
  const added: PoolState = { all: [...pool.all, ...cands.map((c) => ({ ...c, held: true }))] };
  const top = new Set(chosen(added, spec, keep).map((c) => c.id));
  return {
    all: added.all.map((c) => (c.held && !top.has(c.id) ? { id: c.id, round: c.round, scores: c.scores, held: false } : c)),
  };
}

export function toChosen(c: PoolEntry): Chosen {
  if (!c.sample) throw new Error(`pool: candidate ${c.id} is no longer held`);
  return { id: c.id, round: c.round, sample: c.sample, scores: c.scores, ...(c.noise ? { noise: c.noise } : {}), ...(c.xPrediction ? { xPrediction: c.xPrediction } : {}) };
}

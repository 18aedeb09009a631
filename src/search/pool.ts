// The output pool of a multi-round search, as pure functions over JSON-safe state: every candidate
// scored so far (for the ranking), and the worker tensors of the running best `keep` only, so that
// worker memory stays bounded by `keep`, not by the number of candidates (the runner releases what
// the state no longer references). The ranking is one ensemble combine over every candidate so far.
// With rank or normalised ensembles of several verifiers, a new candidate can reorder older ones; a
// candidate whose tensors were already dropped cannot come back, so the outputs are the best of those
// held (exact for a single selection verifier).
// The outputs are distinct samples, as the proto promises: candidates with the same noise identity
// (identity.ts rules: a neighbour at tau = 1 is its pivot) count once, the best-ranked first.
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

/** The best `keep` held candidates, one per noise identity. */
export function chosen(pool: PoolState, spec: SearchSpec, keep: number): PoolEntry[] {
  const seen = new Set<string>();
  const out: PoolEntry[] = [];
  for (const c of ranked(pool, spec)) {
    if (out.length === keep) break;
    if (!c.held) continue;
    const id = identityOf(c);
    if (seen.has(id)) continue;
    seen.add(id);
    out.push(c);
  }
  return out;
}

/** Two candidates with the same identity are the same sample (same noise, same search solve). */
function identityOf(c: PoolEntry): string {
  const r = c.noise ?? c.sample;
  return r ? noiseIdentity(r.recipe) : c.id;
}

/**
 * A canonical key of the tensor a recipe (Recipe.toJSON) builds: equal keys, equal tensors. A
 * neighbour at tau = 1 is its pivot (y = |n| (1 u + 0 w)); everything else keys as its JSON.
 */
export function noiseIdentity(recipe: unknown): string {
  const r = recipe as { neighbour?: { pivot?: unknown; tau?: number } };
  if (r?.neighbour && r.neighbour.tau === 1) return noiseIdentity(r.neighbour.pivot);
  return JSON.stringify(recipe);
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

// Keeps the worker handles of the running best `keep` candidates of a multi-round search and
// releases the rest, so worker memory stays bounded by `keep`, not by the number of candidates.
// The ranking is one ensemble combine over every candidate scored so far. With rank or
// normalised ensembles of several verifiers, a new candidate can reorder older ones; a candidate
// whose handles were already released cannot come back, so the outputs are the best of those
// held (exact for a single selection verifier).
import { rankOrder } from './ensemble';
import type { ScoredCandidate, SearchContext } from './algorithm';
import { columnsOf } from './algorithm';
import { saveCandidate, saveRef, type SavedCandidate, type SavedRef } from './checkpoint';
import type { TensorRef } from './worker-port';

/** A pool in a checkpoint: every candidate in order (held ones with their handles), and the deferred handles. */
export interface SavedPool {
  all: SavedCandidate[];
  deferred: SavedRef[];
}

export class OutputPool {
  private readonly all: ScoredCandidate[] = [];
  private readonly held = new Set<ScoredCandidate>();
  /** Handles of dropped candidates that were protected when dropped (e.g. the pivot's noise). */
  private deferred: TensorRef[] = [];

  constructor(private readonly ctx: SearchContext, private readonly keep: number) {}

  save(): SavedPool {
    return { all: this.all.map((c) => saveCandidate(c, this.held.has(c))), deferred: this.deferred.map(saveRef) };
  }

  /** The pool as saved (handles rebuilt on the worker when first used). */
  static restore(ctx: SearchContext, keep: number, saved: SavedPool): OutputPool {
    const pool = new OutputPool(ctx, keep);
    for (const s of saved.all) {
      const c = ctx.restoreCandidate(s);
      pool.all.push(c);
      if (s.sample) pool.held.add(c);
    }
    pool.deferred = saved.deferred.map((r) => ctx.restore(r));
    return pool;
  }

  /** A candidate added earlier, by id. */
  find(id: string): ScoredCandidate | undefined {
    return this.all.find((c) => c.id === id);
  }

  add(cands: ScoredCandidate[]): void {
    for (const c of cands) {
      this.all.push(c);
      this.held.add(c);
    }
  }

  /** Every candidate so far, best first. */
  ranked(): ScoredCandidate[] {
    if (this.all.length === 0) return [];
    const combined = this.ctx.combine(columnsOf(this.all.map((c) => c.scores)));
    return rankOrder(combined).map((i) => this.all[i]);
  }

  best(): ScoredCandidate | undefined {
    return this.ranked()[0];
  }

  /** Releases the handles of held candidates outside the top `keep`, except protected handles. */
  async sweep(protect: Set<string> = new Set()): Promise<void> {
    const top = new Set(this.ranked().filter((c) => this.held.has(c)).slice(0, this.keep));
    const drop = [...this.held].filter((c) => !top.has(c));
    for (const c of drop) this.held.delete(c);
    const refs = [...this.deferred, ...drop.flatMap((c) => [c.sample, c.noise, c.xPrediction])].filter(
      (r): r is TensorRef => r !== undefined,
    );
    this.deferred = refs.filter((r) => protect.has(r.handle));
    await this.ctx.release(refs.filter((r) => !protect.has(r.handle)));
  }

  /** Handles dropped while protected, not yet released (released by the caller at the end). */
  leftovers(): TensorRef[] {
    return [...this.deferred];
  }

  /** The outputs: the best `keep` of the held candidates. */
  chosen(): ScoredCandidate[] {
    return this.ranked().filter((c) => this.held.has(c)).slice(0, this.keep);
  }
}

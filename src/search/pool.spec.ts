import { Ensemble } from '../gen/noisesearch/search/v1/search';
import { addAndSweep, chosen, emptyPool, noiseIdentity } from './pool';
import type { Chosen, SearchSpec } from './step';

const spec = { selection: [{ name: 'v', weight: 1 }], ensemble: Ensemble.ENSEMBLE_RANK_AVERAGE } as unknown as SearchSpec;
const pivot = { seed: { seed: '7', shape: ['4'] } };
const neighbour = (seed: string, tau: number) => ({ neighbour: { pivot, tau, seed } });
const cand = (id: string, score: number, recipe: unknown): Chosen => ({
  id, round: 1, scores: { v: score }, sample: { handle: `s.${id}`, recipe: { denoise: { parent: recipe } } }, noise: { handle: `n.${id}`, recipe },
});

describe('output pool', () => {
  it('a neighbour at tau = 1 is its pivot; other recipes key as themselves', () => {
    expect(noiseIdentity(neighbour('1', 1))).toBe(noiseIdentity(pivot));
    expect(noiseIdentity(neighbour('1', 1))).toBe(noiseIdentity(neighbour('2', 1)));
    expect(noiseIdentity(neighbour('1', 0.95))).not.toBe(noiseIdentity(neighbour('2', 0.95)));
  });

  it('returns distinct samples: duplicates (tau = 1 neighbours) count once, the best-ranked kept', () => {
    // zero_order {n: 3, tau: 1}: three neighbours that are all the pivot, plus one distinct candidate later.
    let pool = addAndSweep(emptyPool(), [cand('a', 3, neighbour('1', 1)), cand('b', 2, neighbour('2', 1)), cand('c', 1, neighbour('3', 1))], spec, 3);
    expect(chosen(pool, spec, 3).map((c) => c.id)).toEqual(['a']);
    // The duplicates hold no tensors (the runner releases what the state no longer references).
    expect(pool.all.filter((c) => c.held).map((c) => c.id)).toEqual(['a']);
    pool = addAndSweep(pool, [cand('d', 0, neighbour('4', 0.9))], spec, 3);
    expect(chosen(pool, spec, 3).map((c) => c.id)).toEqual(['a', 'd']);
  });

  it('keeps the best `keep` held candidates and drops the tensors of the rest', () => {
    const pool = addAndSweep(emptyPool(), [1, 5, 3, 4].map((s, i) => cand(`c${i}`, s, neighbour(String(i), 0.9))), spec, 2);
    expect(chosen(pool, spec, 2).map((c) => c.id)).toEqual(['c1', 'c3']);
    expect(pool.all.filter((c) => !c.held).every((c) => c.sample === undefined && c.noise === undefined)).toBe(true);
    expect(pool.all.map((c) => c.scores.v)).toEqual([1, 5, 3, 4]);
  });
});

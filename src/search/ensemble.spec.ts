import { Ensemble } from '../gen/noisesearch/search/v1/search';
import { combine, rankOrder, ranks } from './ensemble';

const two = [{ name: 'a', weight: 1 }, { name: 'b', weight: 1 }];

describe('ensemble', () => {
  it('ranks ascending with averaged ties and NaN lowest', () => {
    expect(ranks([10, 30, 20])).toEqual([1, 3, 2]);
    expect(ranks([5, 5, 1, 9])).toEqual([2.5, 2.5, 1, 4]);
    expect(ranks([NaN, 2, NaN, 1])).toEqual([1.5, 4, 1.5, 3]);
  });

  it('RANK_AVERAGE is the unweighted mean of ranks, matched by index', () => {
    // a ranks: [3, 1, 2]; b ranks: [1, 3, 2] -> means [2, 2, 2]
    expect(combine({ a: [9, 1, 5], b: [0, 8, 4] }, two, Ensemble.ENSEMBLE_RANK_AVERAGE)).toEqual([2, 2, 2]);
    // a ranks [1, 2, 3], b ranks [1.5, 1.5, 3] -> [1.25, 1.75, 3]
    expect(combine({ a: [1, 2, 3], b: [7, 7, 9] }, two, Ensemble.ENSEMBLE_RANK_AVERAGE)).toEqual([1.25, 1.75, 3]);
    // weights do not matter for rank average (the paper's ensemble is unweighted)
    const weighted = [{ name: 'a', weight: 100 }, { name: 'b', weight: 1 }];
    expect(combine({ a: [1, 2, 3], b: [7, 7, 9] }, weighted, Ensemble.ENSEMBLE_RANK_AVERAGE)).toEqual([1.25, 1.75, 3]);
  });

  it('ZSCORE_SUM is a weighted sum of z-scores; a constant column contributes 0', () => {
    const out = combine({ a: [1, 2, 3], b: [4, 4, 4] }, [{ name: 'a', weight: 2 }, { name: 'b', weight: 1 }], Ensemble.ENSEMBLE_ZSCORE_SUM);
    const sd = Math.sqrt(2 / 3);
    expect(out[0]).toBeCloseTo(-2 / sd);
    expect(out[1]).toBeCloseTo(0);
    expect(out[2]).toBeCloseTo(2 / sd);
  });

  it('MINMAX_SUM is a weighted sum of min-max normalised scores', () => {
    const out = combine({ a: [0, 5, 10], b: [3, 1, 2] }, [{ name: 'a', weight: 1 }, { name: 'b', weight: 0.5 }], Ensemble.ENSEMBLE_MINMAX_SUM);
    expect(out).toEqual([0 + 0.5 * 1, 0.5 + 0, 1 + 0.5 * 0.5]);
    expect(combine({ a: [2, 2] }, [{ name: 'a', weight: 1 }], Ensemble.ENSEMBLE_MINMAX_SUM)).toEqual([0, 0]);
  });

  it('NaN scores rank last under every method', () => {
    for (const m of [Ensemble.ENSEMBLE_RANK_AVERAGE, Ensemble.ENSEMBLE_ZSCORE_SUM, Ensemble.ENSEMBLE_MINMAX_SUM]) {
      const order = rankOrder(combine({ a: [NaN, 1, 2], b: [NaN, 5, 3] }, two, m));
      expect(order[2]).toBe(0);
    }
  });

  it('rankOrder is best first, ties broken by lower index, NaN last', () => {
    expect(rankOrder([1, 3, 3, NaN, 2])).toEqual([1, 2, 4, 0, 3]);
    expect(rankOrder([NaN, NaN, 0])).toEqual([2, 0, 1]);
  });

  it('refuses missing or mismatched columns', () => {
    expect(() => combine({ a: [1] }, two, Ensemble.ENSEMBLE_RANK_AVERAGE)).toThrow(/b/);
    expect(() => combine({ a: [1], b: [1, 2] }, two, Ensemble.ENSEMBLE_RANK_AVERAGE)).toThrow(/length/);
  });
});

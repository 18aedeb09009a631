import fc from 'fast-check';
import { deriveSeed, isUint64 } from './seeds';

describe('deriveSeed', () => {
  it('is deterministic and a uint64 decimal', () => {
    expect(deriveSeed('42', 'random', 0)).toBe(deriveSeed('42', 'random', 0));
    expect(isUint64(deriveSeed('42', 'random', 0))).toBe(true);
  });

  it('gives distinct seeds for distinct labels, including 1 vs "1" and separator tricks', () => {
    const seeds = [
      deriveSeed('42', 'random', 0), deriveSeed('42', 'random', 1), deriveSeed('43', 'random', 0),
      deriveSeed('42', 'random', '1'), deriveSeed('42', 'a,b'), deriveSeed('42', 'a', 'b'), deriveSeed('42'),
    ];
    expect(new Set(seeds).size).toBe(seeds.length);
  });

  it('never collides over many label paths', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.tuple(fc.nat(50), fc.nat(50)), { minLength: 2, maxLength: 40, selector: ([a, b]) => `${a},${b}` }), (pairs) => {
        const seeds = pairs.map(([a, b]) => deriveSeed('7', 'zo', a, b));
        return new Set(seeds).size === pairs.length && seeds.every(isUint64);
      }),
      { numRuns: 30 },
    );
  });

  it('isUint64 rejects what is not a uint64 decimal', () => {
    for (const bad of ['', '-1', '01', '1.5', 'x', '18446744073709551616']) expect(isUint64(bad)).toBe(false);
    expect(isUint64('18446744073709551615')).toBe(true);
  });
});

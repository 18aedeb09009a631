// Every noise of a search derives from the request seed and a path of labels, so a result's
// recipe names seeds that rebuild it (unlike `base_seed + i` schemes that collide across rounds).
import { createHash } from 'node:crypto';

const UINT64 = /^(0|[1-9][0-9]*)$/;
const UINT64_MAX = (1n << 64n) - 1n;

export function isUint64(s: string): boolean {
  return UINT64.test(s) && BigInt(s) <= UINT64_MAX;
}

/** A uint64 (decimal string): the first 8 bytes of SHA-256 over a JSON encoding of (seed, labels). */
export function deriveSeed(requestSeed: string, ...labels: (string | number)[]): string {
  // JSON keeps 1 and "1" apart and cannot be confused by separators inside labels.
  const digest = createHash('sha256').update(JSON.stringify(['noisesearch/v1', requestSeed, ...labels])).digest();
  return digest.readBigUInt64BE(0).toString();
}

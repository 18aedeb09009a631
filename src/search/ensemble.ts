// Combining several verifiers' scores into one per candidate (higher is better), matched by index.
import { Ensemble } from '../gen/noisesearch/search/v1/search';

export interface WeightedVerifier {
  name: string;
  weight: number;
}

/**
 * RANK_AVERAGE: the paper's unweighted mean of per-verifier ranks (1 = worst; ties share their
 * average rank; NaN ranks below every number). ZSCORE_SUM / MINMAX_SUM: weighted sums of
 * normalised scores (a constant column contributes 0); a NaN score makes the candidate NaN.
 */
export function combine(scores: Record<string, number[]>, verifiers: WeightedVerifier[], method: Ensemble): number[] {
  const columns = verifiers.map((v) => {
    const col = scores[v.name];
    if (!col) throw new Error(`no scores for verifier ${v.name}`);
    return col;
  });
  const n = columns[0]?.length ?? 0;
  if (columns.some((c) => c.length !== n)) throw new Error('verifier score columns differ in length');
  const out = new Array<number>(n).fill(0);
  if (method === Ensemble.ENSEMBLE_RANK_AVERAGE || method === Ensemble.ENSEMBLE_UNSPECIFIED) {
    for (const col of columns) ranks(col).forEach((r, i) => (out[i] += r / columns.length));
    return out;
  }
  const normalise = method === Ensemble.ENSEMBLE_ZSCORE_SUM ? zScores : minMax;
  if (method !== Ensemble.ENSEMBLE_ZSCORE_SUM && method !== Ensemble.ENSEMBLE_MINMAX_SUM) {
    throw new Error(`unknown ensemble ${method}`);
  }
  columns.forEach((col, j) => normalise(col).forEach((z, i) => (out[i] += verifiers[j].weight * z)));
  return out;
}

/** Ascending ranks 1..n (higher score, higher rank), ties averaged, NaN lowest. */
export function ranks(col: number[]): number[] {
  const order = col.map((_, i) => i).sort((a, b) => compareAscending(col[a], col[b]));
  const out = new Array<number>(col.length);
  for (let start = 0; start < order.length; ) {
    let end = start;
    while (end + 1 < order.length && sameValue(col[order[end + 1]], col[order[start]])) end++;
    const avg = (start + end) / 2 + 1;
    for (let t = start; t <= end; t++) out[order[t]] = avg;
    start = end + 1;
  }
  return out;
}

/** Indices best first; ties keep the lower index first; NaN last. */
export function rankOrder(combined: number[]): number[] {
  return combined.map((_, i) => i).sort((a, b) => compareAscending(combined[b], combined[a]) || a - b);
}

function compareAscending(a: number, b: number): number {
  if (Number.isNaN(a)) return Number.isNaN(b) ? 0 : -1;
  if (Number.isNaN(b)) return 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

function sameValue(a: number, b: number): boolean {
  return a === b || (Number.isNaN(a) && Number.isNaN(b));
}

function finite(col: number[]): number[] {
  return col.filter((x) => !Number.isNaN(x));
}

function zScores(col: number[]): number[] {
  const xs = finite(col);
  const mean = xs.reduce((s, x) => s + x, 0) / (xs.length || 1);
  const sd = Math.sqrt(xs.reduce((s, x) => s + (x - mean) ** 2, 0) / (xs.length || 1));
  return col.map((x) => (Number.isNaN(x) ? NaN : sd > 0 ? (x - mean) / sd : 0));
}

function minMax(col: number[]): number[] {
  const xs = finite(col);
  const lo = Math.min(...xs);
  const hi = Math.max(...xs);
  return col.map((x) => (Number.isNaN(x) ? NaN : hi > lo ? (x - lo) / (hi - lo) : 0));
}

// Dashboard previews of a round's kept candidates, decoded while their tensors are still on the worker
// (instead of rebuilding them from their recipes later). The handles come from the round's checkpoint
// state, where every algorithm saves its kept candidates as { id, sample: { handle, recipe } }.
import type { Round } from '../gen/noisesearch/search/v1/search';

export interface CandidatePreview {
  id: string;
  png: Buffer;
}

/** Kept candidate id -> the handle of its sample, from the checkpoint state (any nesting). */
export function keptHandles(round: Round, state: unknown): Map<string, string> {
  const kept = new Set(round.kept);
  const out = new Map<string, string>();
  const seen = new Set<unknown>();
  const walk = (x: unknown, depth: number): void => {
    if (!x || typeof x !== 'object' || depth > 6 || seen.has(x)) return;
    seen.add(x);
    if (Array.isArray(x)) return x.forEach((v) => walk(v, depth + 1));
    const o = x as { id?: unknown; sample?: { handle?: unknown } };
    if (typeof o.id === 'string' && kept.has(o.id) && typeof o.sample?.handle === 'string') out.set(o.id, o.sample.handle);
    for (const v of Object.values(o)) walk(v, depth + 1);
  };
  walk(state, 0);
  return out;
}

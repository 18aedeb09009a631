// Zero-order search (ZO-N, Ma et al. 2025): a pivot noise; each iteration N neighbours at cosine
// tau (y = |n| (tau u + sqrt(1 - tau^2) w)); solved, scored; the best neighbour becomes the pivot.
// The pivot is never solved itself, so an iteration from a fresh pivot accepts its best neighbour.
// An iteration whose best neighbour does not beat the pivot (one ensemble over [pivot, ...neighbours])
// is rejected and the next iteration redraws with fresh seeds (public code found plain ZO stalls),
// unless accept_non_improving; max_rejections rejections in a row restart from a fresh random pivot.
import type { Candidate } from '../../gen/noisesearch/search/v1/search';
import { candidateId, columnsOf, rowsOf, toCandidate, type AlgorithmOutcome, type ScoredCandidate, type SearchAlgorithm, type SearchContext } from '../algorithm';
import { rankOrder } from '../ensemble';
import { saveRef, type AlgorithmResume, type SavedRef } from '../checkpoint';
import { OutputPool, type SavedPool } from '../pool';
import type { TensorRef } from '../worker-port';

interface Pivot {
  noise: TensorRef;
  /** The candidate it came from; absent for a fresh (never solved) pivot. */
  from?: ScoredCandidate;
}

/** The state after a round: enough to run the next one exactly as an uninterrupted search would. */
interface ZeroOrderState {
  restarts: number;
  rejections: number;
  pivot: { noise: SavedRef; fromId?: string };
  pool: SavedPool;
}

export const zeroOrderSearch: SearchAlgorithm = {
  name: 'zero_order',
  async run(ctx: SearchContext, resume?: AlgorithmResume): Promise<AlgorithmOutcome> {
    const { n, k } = ctx.plan;
    const { tau, acceptNonImproving, maxRejections } = ctx.request.zeroOrder!;
    const candidates: Candidate[] = resume ? resume.rounds.flatMap((r) => r.candidates) : [];
    const saved = resume?.state as ZeroOrderState | undefined;
    const pool = saved ? OutputPool.restore(ctx, ctx.request.numOutputs, saved.pool) : new OutputPool(ctx, ctx.request.numOutputs);
    let restarts = saved?.restarts ?? 0;
    let rejections = saved?.rejections ?? 0;
    const freshPivot = async (): Promise<Pivot> => ({ noise: (await ctx.port.initialNoises([ctx.seed('zero_order', 'pivot', restarts)]))[0] });
    let pivot: Pivot = saved
      ? { noise: ctx.restore(saved.pivot.noise), from: saved.pivot.fromId !== undefined ? pool.find(saved.pivot.fromId) : undefined }
      : await freshPivot();
    const state = (): ZeroOrderState => ({
      restarts, rejections, pivot: { noise: saveRef(pivot.noise), fromId: pivot.from?.id }, pool: pool.save(),
    });

    for (let round = (resume?.round ?? 0) + 1; round <= k; round++) {
      ctx.checkCancelled();
      const seeds = Array.from({ length: n }, (_, j) => ctx.seed('zero_order', 'neighbour', round, j));
      const noises = await ctx.port.neighbours(pivot.noise, tau, seeds);
      const solved = await ctx.solve(noises, 1, 0, `zero_order round ${round}: ${n} neighbours`, { capture: true });
      const { raw } = await ctx.scoreForSelection(solved.outputs, solved.xPredictions);
      const rows = rowsOf(raw, n);
      const cands: ScoredCandidate[] = solved.outputs.map((sample, i) => ({
        id: candidateId(round, i), round, sample, noise: noises[i], xPrediction: solved.xPredictions?.[i], scores: rows[i],
      }));

      // Rank the neighbours together with the pivot, so "improvement" means beating it under the same ensemble.
      const joint = pivot.from ? ctx.combine(columnsOf([pivot.from.scores, ...rows])) : undefined;
      const combined = joint ? joint.slice(1) : ctx.combine(raw);
      const best = rankOrder(combined)[0];
      const improved = !joint || combined[best] > joint[0];

      let note: string;
      let accepted = false;
      if (!pivot.from) {
        note = 'fresh pivot: best neighbour accepted';
        accepted = true;
      } else if (improved) {
        note = 'accepted: improvement';
        accepted = true;
      } else if (acceptNonImproving) {
        note = 'accepted without improvement (accept_non_improving)';
        accepted = true;
      } else {
        rejections++;
        note = 'rejected: no improvement; neighbourhood redrawn with fresh seeds';
      }

      const previous = pivot;
      if (accepted) {
        rejections = 0;
        pivot = { noise: cands[best].noise!, from: cands[best] };
      } else if (maxRejections > 0 && rejections >= maxRejections && round < k) {
        restarts++;
        note += `; ${rejections} rejections in a row: restart from a fresh pivot`;
        rejections = 0;
        pivot = await freshPivot();
      }
      if (previous !== pivot && !previous.from) await ctx.release([previous.noise]);

      pool.add(cands);
      await pool.sweep(new Set([pivot.noise.handle]));
      const roundCandidates = cands.map((c, i) => toCandidate(ctx, c, combined[i], accepted && i === best));
      candidates.push(...roundCandidates);
      ctx.emitRound({
        round,
        nfesSpent: String(ctx.ledger.searchNfes),
        sigma: 0,
        bestScores: ctx.verifierScores(pool.best()!.scores),
        kept: accepted ? [cands[best].id] : [],
        candidates: roundCandidates,
        note,
      }, state());
    }

    const chosen = pool.chosen();
    const chosenHandles = new Set(chosen.flatMap((c) => [c.sample.handle, c.noise?.handle]));
    await ctx.release([...pool.leftovers(), ...(pivot.from ? [] : [pivot.noise])].filter((r) => !chosenHandles.has(r.handle)));
    // The current pivot's noise may belong to a candidate no longer held by the pool.
    if (pivot.from && !chosenHandles.has(pivot.noise.handle)) await ctx.release([pivot.noise]);
    return { chosen, candidates };
  },
};

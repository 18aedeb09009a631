// Random search (best-of-N, Ma et al. 2025): N i.i.d. noises, solved 1 -> 0, scored, best kept.
// One round: one batched noise call, one denoise, one score.
import type { Candidate } from '../../gen/noisesearch/search/v1/search';
import { candidateId, rowsOf, toCandidate, type AlgorithmOutcome, type ScoredCandidate, type SearchAlgorithm, type SearchContext } from '../algorithm';
import { saveCandidate, type AlgorithmResume, type SavedCandidate } from '../checkpoint';
import { rankOrder } from '../ensemble';

interface RandomState {
  chosen: SavedCandidate[];
}

const ROUND = 1;

export const randomSearch: SearchAlgorithm = {
  name: 'random',
  async run(ctx: SearchContext, resume?: AlgorithmResume): Promise<AlgorithmOutcome> {
    if (resume) {
      // The one round is done: its chosen candidates are all that is left.
      const { chosen } = resume.state as RandomState;
      return { chosen: chosen.map((c) => ctx.restoreCandidate(c)), candidates: resume.rounds.flatMap((r) => r.candidates) };
    }
    ctx.checkCancelled();
    const n = ctx.plan.n;
    const seeds = Array.from({ length: n }, (_, i) => ctx.seed('random', i));
    const noises = await ctx.port.initialNoises(seeds);
    const solved = await ctx.solve(noises, 1, 0, `random: ${n} candidates`, { capture: true });
    const { raw, combined } = await ctx.scoreForSelection(solved.outputs, solved.xPredictions);
    const rows = rowsOf(raw, n);
    const cands: ScoredCandidate[] = solved.outputs.map((sample, i) => ({
      id: candidateId(ROUND, i),
      round: ROUND,
      sample,
      noise: noises[i],
      xPrediction: solved.xPredictions?.[i],
      scores: rows[i],
    }));

    const order = rankOrder(combined);
    const chosen = order.slice(0, ctx.request.numOutputs).map((i) => cands[i]);
    const kept = new Set(chosen);
    await ctx.release(cands.filter((c) => !kept.has(c)).flatMap((c) => [c.sample, c.noise, c.xPrediction]));

    const candidates: Candidate[] = cands.map((c, i) => toCandidate(ctx, c, combined[i], kept.has(c)));
    ctx.emitRound({
      round: ROUND,
      nfesSpent: String(ctx.ledger.searchNfes),
      sigma: 0,
      bestScores: ctx.verifierScores(chosen[0].scores),
      kept: chosen.map((c) => c.id),
      candidates,
      note: `best of ${n}`,
    }, { chosen: chosen.map((c) => saveCandidate(c)) } satisfies RandomState);
    return { chosen, candidates };
  },
};

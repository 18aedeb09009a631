// Search over paths (Paths-N, Ma et al. 2025): N noises solved to sigma_start; each round every kept
// sample spawns M children: exact forward noising sigma -> sigma + df (seeded), a solve back to
// sigma' = max(0, sigma + df - db), and one extra NFE for the x-prediction at sigma', which the
// verifiers score (they are not trained on noisy inputs); the top N are kept; at sigma' = 0 the
// clean children are scored directly and the best num_outputs are returned. Outputs are the
// searched samples themselves (no final re-solve; plan.final_reuses_search).
import type { Candidate } from '../../gen/noisesearch/search/v1/search';
import { candidateId, rowsOf, toCandidate, type AlgorithmOutcome, type ScoredCandidate, type SearchAlgorithm, type SearchContext } from '../algorithm';
import { rankOrder } from '../ensemble';
import { pathLevels } from '../nfe';
import type { TensorRef } from '../worker-port';

interface Path {
  id: string;
  sample: TensorRef;
}

export const pathsSearch: SearchAlgorithm = {
  name: 'paths',
  async run(ctx: SearchContext): Promise<AlgorithmOutcome> {
    const { n, m } = ctx.plan;
    const p = ctx.request.paths!;
    const levels = pathLevels(p.sigmaStart, p.deltaForward, p.deltaBackward);
    const candidates: Candidate[] = [];

    ctx.checkCancelled();
    const noises = await ctx.port.initialNoises(Array.from({ length: n }, (_, i) => ctx.seed('paths', 'start', i)));
    const start = await ctx.solve(noises, 1, p.sigmaStart, `paths round 0: ${n} noises to sigma ${p.sigmaStart}`, { releaseInputs: true });
    let kept: Path[] = start.outputs.map((sample, i) => ({ id: candidateId(0, i), sample }));
    const startCandidates = kept.map((k) => ({ id: k.id, round: 0, scores: [], ensembleScore: 0, kept: true, recipe: k.sample.recipe }));
    candidates.push(...startCandidates);
    ctx.emitRound({
      round: 0, nfesSpent: String(ctx.ledger.searchNfes), sigma: p.sigmaStart, bestScores: [],
      kept: kept.map((k) => k.id), candidates: startCandidates, note: `${n} noises solved to sigma ${p.sigmaStart}`,
    });

    let chosen: ScoredCandidate[] = [];
    for (let li = 0; li < levels.length; li++) {
      ctx.checkCancelled();
      const round = li + 1;
      const level = levels[li];
      const last = level.to === 0;
      const parents = kept.flatMap((k) => Array.from({ length: m }, () => k.sample));
      const seeds = kept.flatMap((_, i) => Array.from({ length: m }, (_, j) => ctx.seed('paths', 'forward', round, i, j)));
      const noised = await ctx.port.forwardNoise(parents, level.from, level.up, seeds);
      await ctx.release(kept.map((k) => k.sample));
      const solved = await ctx.solve(noised, level.up, level.to, `paths round ${round}: ${parents.length} children to sigma ${level.to}`, {
        steps: p.backwardSteps || undefined,
        releaseInputs: true,
      });
      const children = solved.outputs;
      const judged = last ? children : await ctx.xPrediction(children, level.to, `paths round ${round}: x-predictions`);
      const { raw, combined } = await ctx.scoreForSelection(judged);
      if (!last) await ctx.release(judged);

      const rows = rowsOf(raw, children.length);
      const cands: ScoredCandidate[] = children.map((sample, i) => ({ id: candidateId(round, i), round, sample, scores: rows[i] }));
      const order = rankOrder(combined);
      const keepIdx = order.slice(0, last ? ctx.request.numOutputs : n);
      const keepSet = new Set(keepIdx);
      await ctx.release(cands.filter((_, i) => !keepSet.has(i)).map((c) => c.sample));
      kept = keepIdx.map((i) => ({ id: cands[i].id, sample: cands[i].sample }));
      if (last) chosen = keepIdx.map((i) => cands[i]);

      const roundCandidates = cands.map((c, i) => toCandidate(ctx, c, combined[i], keepSet.has(i)));
      candidates.push(...roundCandidates);
      ctx.emitRound({
        round,
        nfesSpent: String(ctx.ledger.searchNfes),
        sigma: level.to,
        bestScores: ctx.verifierScores(cands[order[0]].scores),
        kept: kept.map((k) => k.id),
        candidates: roundCandidates,
        note: last ? `clean samples scored; best ${keepIdx.length} returned` : `x-predictions at sigma ${level.to} scored; top ${n} kept`,
      });
    }
    return { chosen, candidates };
  },
};

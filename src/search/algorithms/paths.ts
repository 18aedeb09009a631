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
import { saveCandidate, saveRef, type AlgorithmResume, type SavedCandidate, type SavedRef } from '../checkpoint';
import type { TensorRef } from '../worker-port';

interface Path {
  id: string;
  sample: TensorRef;
}

/** The state after a round: the kept paths (and, after the last round, the chosen samples). */
interface PathsState {
  kept: { id: string; sample: SavedRef }[];
  chosen: SavedCandidate[];
}

export const pathsSearch: SearchAlgorithm = {
  name: 'paths',
  async run(ctx: SearchContext, resume?: AlgorithmResume): Promise<AlgorithmOutcome> {
    const { n, m } = ctx.plan;
    const p = ctx.request.paths!;
    const levels = pathLevels(p.sigmaStart, p.deltaForward, p.deltaBackward);
    const candidates: Candidate[] = [];
    let kept: Path[];
    let chosen: ScoredCandidate[] = [];
    const state = (): PathsState => ({ kept: kept.map((k) => ({ id: k.id, sample: saveRef(k.sample) })), chosen: chosen.map((c) => saveCandidate(c)) });

    if (resume) {
      const saved = resume.state as PathsState;
      candidates.push(...resume.rounds.flatMap((r) => r.candidates));
      kept = saved.kept.map((k) => ({ id: k.id, sample: ctx.restore(k.sample) }));
      chosen = saved.chosen.map((c) => ctx.restoreCandidate(c));
    } else {
      kept = await startPaths(ctx, n, p.sigmaStart);
      const startCandidates = kept.map((k) => ({ id: k.id, round: 0, scores: [], ensembleScore: 0, kept: true, recipe: k.sample.recipe }));
      candidates.push(...startCandidates);
      ctx.emitRound({
        round: 0, nfesSpent: String(ctx.ledger.searchNfes), sigma: p.sigmaStart, bestScores: [],
        kept: kept.map((k) => k.id), candidates: startCandidates, note: `${n} noises solved to sigma ${p.sigmaStart}`,
      }, state());
    }

    for (let li = resume?.round ?? 0; li < levels.length; li++) {
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
      }, state());
    }
    return { chosen, candidates };
  },
};

/** Round 0: N noises solved from 1 to sigma_start. */
async function startPaths(ctx: SearchContext, n: number, sigmaStart: number): Promise<Path[]> {
  ctx.checkCancelled();
  const noises = await ctx.port.initialNoises(Array.from({ length: n }, (_, i) => ctx.seed('paths', 'start', i)));
  const start = await ctx.solve(noises, 1, sigmaStart, `paths round 0: ${n} noises to sigma ${sigmaStart}`, { releaseInputs: true });
  return start.outputs.map((sample, i) => ({ id: candidateId(0, i), sample }));
}

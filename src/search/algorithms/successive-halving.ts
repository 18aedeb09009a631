// Successive halving over noises (lookahead pruning). Jamieson & Talwalkar (2016)'s successive halving
// applied to sampling noises, as the "draft then verify" methods do (beyond-the-paper.md), motivated by
// Ma et al.'s finding that the x-prediction at sigma = 0.4 predicts the final verdict.
// N noises solved 1 -> rung_1; the x-predictions at the rung (one NFE each, as paths scores them) are
// scored and the top max(1, floor(count / reduction)) continue to rung_2; ...; the survivors finish at
// sigma = 0, are scored on clean samples, and the best num_outputs return (re-solved from their noises
// with final_solver, as random search, unless it equals the search solver). A survivor's next segment
// takes its first evaluation from the rung x-prediction that judged it (Denoise first_predictions), so
// only the pruned candidates' lookahead costs extra; except where that segment captures an x-prediction
// for a verifier (it could fall on the reused level). With free_lookahead the rung scores the
// x-prediction the segment's last evaluation gives (one grid step above the rung), captured at no NFE.
import { combine, rankOrder } from '../ensemble';
import { accountedSolver, segmentNfes, xPredictionNfes } from '../nfe';
import { deriveSeed } from '../seeds';
import type { SavedRef } from '../checkpoint';
import type { ResolvedRequest } from '../resolve';
import { candidateId, captureOf, outputOf, rowsOf, type Action, type Chosen, type StepAlgorithm } from '../step';

interface Alive { id: string; index: number; noise: SavedRef; sample: SavedRef; judged?: SavedRef }

interface ShState {
  /** Stages done: stage s < rungs.length solves to rung s; the last solves to 0. */
  stage: number;
  alive: Alive[];
  chosen?: Chosen[];
}

/** Candidates alive at the start and after each rung: N, then max(1, floor(count / reduction)). */
export function rungSizes(n: number, rungs: number, reduction: number): number[] {
  const sizes = [n];
  for (let i = 0; i < rungs; i++) sizes.push(Math.max(1, Math.floor(sizes[i] / reduction)));
  return sizes;
}

/** Whether segment `stage` (> 0) starts from the rung x-predictions that judged its inputs. */
export function reusesRung(r: ResolvedRequest, stage: number): boolean {
  const h = r.successiveHalving!;
  if (stage === 0 || h.freeLookahead) return false;
  const levels = [1, ...h.rungs, 0];
  const [from, to] = [levels[stage], levels[stage + 1]];
  const captures = to === 0 && r.xPredictionAt !== undefined && r.xPredictionAt <= from && r.xPredictionAt >= to;
  return !captures;
}

/** Closed-form search NFEs: every alive candidate solves each segment; each rung costs one x-prediction per candidate, less those its survivors' next segment reuses. */
export function successiveHalvingNfes(r: ResolvedRequest, n: number): number {
  const h = r.successiveHalving!;
  const search = accountedSolver(r.searchSolver, r.model.guidanceEmbedded);
  const sizes = rungSizes(n, h.rungs.length, h.reduction);
  const levels = [1, ...h.rungs, 0];
  let total = 0;
  for (let s = 0; s < levels.length - 1; s++) {
    total += sizes[s] * segmentNfes(search, levels[s], levels[s + 1], undefined, reusesRung(r, s));
    if (s < h.rungs.length && !h.freeLookahead) total += sizes[s] * xPredictionNfes(search.guidanceScale);
  }
  return total;
}

export const successiveHalvingSearch: StepAlgorithm<ShState> = {
  name: 'successive_halving',
  init: () => ({ stage: 0, alive: [] }),

  propose(state, spec) {
    const h = spec.successiveHalving!;
    if (state.chosen) return { done: true, chosen: state.chosen };
    const levels = [1, ...h.rungs, 0];
    const from = levels[state.stage];
    const to = levels[state.stage + 1];
    const last = to === 0;
    const actions: Action[] = [];
    let inputs;
    let firstPredictions;
    if (state.stage === 0) {
      const seeds = Array.from({ length: h.n }, (_, i) => deriveSeed(spec.seed, 'successive_halving', i));
      actions.push({ kind: 'noises', id: 'noises', seeds });
      inputs = seeds.map((_, i) => outputOf('noises', i));
    } else {
      inputs = state.alive.map((a) => a.sample);
      if (reusesRung(spec, state.stage)) firstPredictions = state.alive.map((a) => a.judged!);
    }
    const count = inputs.length;
    const lookahead = !last && h.freeLookahead;
    actions.push({
      kind: 'solve', id: 'solve', what: `successive_halving stage ${state.stage}: ${count} candidates to sigma ${to}`,
      inputs, sigmaFrom: from, sigmaTo: to, ...(last ? { capture: true } : {}), ...(lookahead ? { captureAt: to } : {}),
      ...(firstPredictions ? { firstPredictions } : {}),
    });
    const solved = inputs.map((_, i) => outputOf('solve', i));
    if (lookahead) {
      actions.push({ kind: 'score', id: 'score', samples: inputs.map((_, i) => captureOf('solve', i)) });
    } else if (last) {
      actions.push({ kind: 'score', id: 'score', samples: solved, xPredictions: inputs.map((_, i) => ({ of: 'solve', index: i, capture: true })) });
    } else {
      actions.push(
        { kind: 'xprediction', id: 'judged', what: `successive_halving rung ${state.stage + 1}: x-predictions at sigma ${to}`, inputs: solved, sigma: to },
        { kind: 'score', id: 'score', samples: inputs.map((_, i) => outputOf('judged', i)) },
      );
    }
    return { done: false, actions };
  },

  observe(state, spec, results) {
    const h = spec.successiveHalving!;
    const round = state.stage + 1;
    const to = [...h.rungs, 0][state.stage];
    const last = to === 0;
    const samples = results.solve.outputs;
    const prior: Omit<Alive, 'sample'>[] = state.stage === 0
      ? results.noises.outputs.map((noise, i) => ({ id: candidateId(round, i), index: i, noise }))
      : state.alive;
    const raw = results.score.scores!;
    const combined = combine(raw, spec.selection, spec.ensemble);
    const rows = rowsOf(raw, samples.length);
    const order = rankOrder(combined);
    const keepCount = last ? Math.min(spec.numOutputs, samples.length) : rungSizes(h.n, h.rungs.length, h.reduction)[state.stage + 1];
    const keepIdx = order.slice(0, keepCount);
    const keepSet = new Set(keepIdx);
    const ids = prior.map((p) => candidateId(round, p.index));
    const judged = results.judged?.outputs;
    const alive: Alive[] = keepIdx.map((i) => ({ id: ids[i], index: prior[i].index, noise: prior[i].noise, sample: samples[i], ...(judged ? { judged: judged[i] } : {}) }));
    const chosen: Chosen[] | undefined = last
      ? keepIdx.map((i) => ({
        id: ids[i], round, sample: samples[i], noise: prior[i].noise, scores: rows[i],
        ...(results.solve.captures?.[i] ? { xPrediction: results.solve.captures[i] } : {}),
      }))
      : undefined;
    return {
      state: { stage: state.stage + 1, alive: last ? [] : alive, ...(chosen ? { chosen } : {}) },
      round: {
        round,
        sigma: to,
        best: rows[order[0]],
        kept: keepIdx.map((i) => ids[i]),
        candidates: samples.map((sample, i) => ({ id: ids[i], round, sample, scores: rows[i], ensembleScore: combined[i], kept: keepSet.has(i) })),
        note: last
          ? `${samples.length} finishers scored on clean samples; best ${keepIdx.length} returned`
          : `rung ${round} at sigma ${to}: x-predictions of ${samples.length} scored, top ${keepIdx.length} continue`,
      },
    };
  },
};

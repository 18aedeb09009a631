// Search over paths (Paths-N, Ma et al. 2025): N noises solved to sigma_start; each round every kept
// sample spawns M children: exact forward noising sigma -> sigma + df (seeded), a solve back to
// sigma' = max(0, sigma + df - db), and one extra NFE for the x-prediction at sigma', which the
// verifiers score (they are not trained on noisy inputs); the top N are kept; at sigma' = 0 the
// clean children are scored directly and the best num_outputs are returned. Outputs are the
// searched samples themselves (no final re-solve; plan.final_reuses_search).
import { combine, rankOrder } from '../ensemble';
import { pathLevels } from '../nfe';
import { deriveSeed } from '../seeds';
import type { SavedRef } from '../checkpoint';
import { candidateId, outputOf, rowsOf, type Action, type Chosen, type StepAlgorithm } from '../step';

/** The state after a round: the kept paths (and, after the last round, the chosen samples). */
interface PathsState {
  /** The last round done: -1 before round 0 (the N noises solved to sigma_start). */
  round: number;
  kept: { id: string; sample: SavedRef }[];
  chosen?: Chosen[];
}

const levelsOf = (p: NonNullable<import('../step').SearchSpec['paths']>) => pathLevels(p.sigmaStart, p.deltaForward, p.deltaBackward);

export const pathsSearch: StepAlgorithm<PathsState> = {
  name: 'paths',
  init: () => ({ round: -1, kept: [] }),

  propose(state, spec) {
    const p = spec.paths!;
    if (state.chosen) return { done: true, chosen: state.chosen };
    if (state.round < 0) {
      const seeds = Array.from({ length: p.n }, (_, i) => deriveSeed(spec.seed, 'paths', 'start', i));
      return {
        done: false,
        actions: [
          { kind: 'noises', id: 'noises', seeds },
          {
            kind: 'solve', id: 'start', what: `paths round 0: ${p.n} noises to sigma ${p.sigmaStart}`,
            inputs: seeds.map((_, i) => outputOf('noises', i)), sigmaFrom: 1, sigmaTo: p.sigmaStart, releaseInputs: true,
          },
        ],
      };
    }
    const round = state.round + 1;
    const level = levelsOf(p)[state.round];
    const last = level.to === 0;
    const parents = state.kept.flatMap((k) => Array.from({ length: p.m }, () => k.sample));
    const seeds = state.kept.flatMap((_, i) => Array.from({ length: p.m }, (_, j) => deriveSeed(spec.seed, 'paths', 'forward', round, i, j)));
    const children = parents.map((_, i) => outputOf('solve', i));
    const actions: Action[] = [
      { kind: 'forward', id: 'forward', inputs: parents, sigmaFrom: level.from, sigmaTo: level.up, seeds },
      {
        kind: 'solve', id: 'solve', what: `paths round ${round}: ${parents.length} children to sigma ${level.to}`,
        inputs: parents.map((_, i) => outputOf('forward', i)), sigmaFrom: level.up, sigmaTo: level.to,
        ...(p.backwardSteps ? { steps: p.backwardSteps } : {}), releaseInputs: true,
      },
    ];
    if (last) {
      actions.push({ kind: 'score', id: 'score', samples: children });
    } else {
      actions.push(
        { kind: 'xprediction', id: 'judged', what: `paths round ${round}: x-predictions`, inputs: children, sigma: level.to },
        { kind: 'score', id: 'score', samples: parents.map((_, i) => outputOf('judged', i)) },
      );
    }
    return { done: false, actions };
  },

  observe(state, spec, results) {
    const p = spec.paths!;
    if (state.round < 0) {
      const kept = results.start.outputs.map((sample, i) => ({ id: candidateId(0, i), sample }));
      return {
        state: { round: 0, kept },
        round: {
          round: 0, sigma: p.sigmaStart, best: {}, kept: kept.map((k) => k.id),
          candidates: kept.map((k) => ({ id: k.id, round: 0, sample: k.sample, scores: {}, ensembleScore: 0, kept: true })),
          note: `${p.n} noises solved to sigma ${p.sigmaStart}`,
        },
      };
    }
    const round = state.round + 1;
    const level = levelsOf(p)[state.round];
    const last = level.to === 0;
    const children = results.solve.outputs;
    const raw = results.score.scores!;
    const combined = combine(raw, spec.selection, spec.ensemble);
    const rows = rowsOf(raw, children.length);
    const cands: Chosen[] = children.map((sample, i) => ({ id: candidateId(round, i), round, sample, scores: rows[i] }));
    const order = rankOrder(combined);
    const keepIdx = order.slice(0, last ? spec.numOutputs : p.n);
    const keepSet = new Set(keepIdx);
    const kept = keepIdx.map((i) => ({ id: cands[i].id, sample: cands[i].sample }));
    return {
      state: { round, kept, ...(last ? { chosen: keepIdx.map((i) => cands[i]) } : {}) },
      round: {
        round,
        sigma: level.to,
        best: cands[order[0]].scores,
        kept: kept.map((k) => k.id),
        candidates: cands.map((c, i) => ({ id: c.id, round, sample: c.sample, scores: c.scores, ensembleScore: combined[i], kept: keepSet.has(i) })),
        note: last ? `clean samples scored; best ${keepIdx.length} returned` : `x-predictions at sigma ${level.to} scored; top ${p.n} kept`,
      },
    };
  },
};

// Random search (best-of-N, Ma et al. 2025): N i.i.d. noises, solved 1 -> 0, scored, best kept.
// One step: one batched noise call, one solve (capturing the x-prediction when a verifier needs it), one score.
import { combine, rankOrder } from '../ensemble';
import { deriveSeed } from '../seeds';
import { candidateId, captureOf, outputOf, rowsOf, type Chosen, type StepAlgorithm } from '../step';

/** Before the round: nothing; after it: the chosen candidates. */
interface RandomState {
  chosen?: Chosen[];
}

const ROUND = 1;

export const randomSearch: StepAlgorithm<RandomState> = {
  name: 'random',
  init: () => ({}),

  propose(state, spec) {
    if (state.chosen) return { done: true, chosen: state.chosen };
    const n = spec.random!.n;
    const seeds = Array.from({ length: n }, (_, i) => deriveSeed(spec.seed, 'random', i));
    const all = Array.from({ length: n }, (_, i) => i);
    return {
      done: false,
      actions: [
        { kind: 'noises', id: 'noises', seeds },
        { kind: 'solve', id: 'solve', what: `random: ${n} candidates`, inputs: all.map((i) => outputOf('noises', i)), sigmaFrom: 1, sigmaTo: 0, capture: true },
        { kind: 'score', id: 'score', samples: all.map((i) => outputOf('solve', i)), xPredictions: all.map((i) => captureOf('solve', i)) },
      ],
    };
  },

  observe(_state, spec, results) {
    const n = spec.random!.n;
    const raw = results.score.scores!;
    const combined = combine(raw, spec.selection, spec.ensemble);
    const rows = rowsOf(raw, n);
    const solved = results.solve;
    const cands: Chosen[] = solved.outputs.map((sample, i) => ({
      id: candidateId(ROUND, i),
      round: ROUND,
      sample,
      noise: results.noises.outputs[i],
      ...(solved.captures ? { xPrediction: solved.captures[i] } : {}),
      scores: rows[i],
    }));
    const order = rankOrder(combined);
    const chosen = order.slice(0, spec.numOutputs).map((i) => cands[i]);
    const kept = new Set(chosen.map((c) => c.id));
    return {
      state: { chosen },
      round: {
        round: ROUND,
        sigma: 0,
        best: chosen[0].scores,
        kept: chosen.map((c) => c.id),
        candidates: cands.map((c, i) => ({ id: c.id, round: ROUND, sample: c.sample, scores: c.scores, ensembleScore: combined[i], kept: kept.has(c.id) })),
        note: `best of ${n}`,
      },
    };
  },
};

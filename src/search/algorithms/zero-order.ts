// Zero-order search (ZO-N, Ma et al. 2025): a pivot noise; each iteration N neighbours at cosine
// tau (y = |n| (tau u + sqrt(1 - tau^2) w)); solved, scored; the best neighbour becomes the pivot.
// The pivot is never solved itself, so an iteration from a fresh pivot accepts its best neighbour.
// An iteration whose best neighbour does not beat the pivot (one ensemble over [pivot, ...neighbours])
// is rejected and the next iteration redraws with fresh seeds (public code found plain ZO stalls),
// unless accept_non_improving; max_rejections rejections in a row restart from a fresh random pivot.
// One step per iteration: (a fresh pivot's noise,) neighbours, one solve, one score.
import { combine, rankOrder } from '../ensemble';
import { addAndSweep, chosen, emptyPool, find, ranked, toChosen, type PoolState } from '../pool';
import { deriveSeed } from '../seeds';
import type { SavedRef } from '../checkpoint';
import { candidateId, captureOf, columnsOf, outputOf, rowsOf, type Action, type Chosen, type Input, type StepAlgorithm } from '../step';

/** The state after an iteration: enough to run the next one exactly as an uninterrupted search would. */
interface ZeroOrderState {
  /** Iterations done. */
  round: number;
  restarts: number;
  rejections: number;
  /** The pivot: a candidate's noise, or (absent) a fresh noise drawn from the restart count. */
  pivot?: { noise: SavedRef; fromId: string };
  pool: PoolState;
}

export const zeroOrderSearch: StepAlgorithm<ZeroOrderState> = {
  name: 'zero_order',
  init: () => ({ round: 0, restarts: 0, rejections: 0, pool: emptyPool() }),

  propose(state, spec) {
    const { n, k, tau } = spec.zeroOrder!;
    if (state.round >= k) return { done: true, chosen: chosen(state.pool, spec, spec.numOutputs).map(toChosen) };
    const round = state.round + 1;
    const actions: Action[] = [];
    let pivot: Input;
    if (state.pivot) {
      pivot = state.pivot.noise;
    } else {
      actions.push({ kind: 'noises', id: 'pivot', seeds: [deriveSeed(spec.seed, 'zero_order', 'pivot', state.restarts)] });
      pivot = outputOf('pivot', 0);
    }
    const all = Array.from({ length: n }, (_, j) => j);
    actions.push(
      { kind: 'neighbours', id: 'neighbours', pivot, tau, seeds: all.map((j) => deriveSeed(spec.seed, 'zero_order', 'neighbour', round, j)) },
      { kind: 'solve', id: 'solve', what: `zero_order round ${round}: ${n} neighbours`, inputs: all.map((j) => outputOf('neighbours', j)), sigmaFrom: 1, sigmaTo: 0, capture: true },
      { kind: 'score', id: 'score', samples: all.map((j) => outputOf('solve', j)), xPredictions: all.map((j) => captureOf('solve', j)) },
    );
    return { done: false, actions };
  },

  observe(state, spec, results) {
    const { n, k, acceptNonImproving, maxRejections } = spec.zeroOrder!;
    const round = state.round + 1;
    const raw = results.score.scores!;
    const rows = rowsOf(raw, n);
    const solved = results.solve;
    const cands: Chosen[] = solved.outputs.map((sample, i) => ({
      id: candidateId(round, i), round, sample, noise: results.neighbours.outputs[i],
      ...(solved.captures ? { xPrediction: solved.captures[i] } : {}), scores: rows[i],
    }));

    // Rank the neighbours together with the pivot, so "improvement" means beating it under the same ensemble.
    const from = state.pivot ? find(state.pool, state.pivot.fromId) : undefined;
    const joint = from ? combine(columnsOf([from.scores, ...rows]), spec.selection, spec.ensemble) : undefined;
    const combined = joint ? joint.slice(1) : combine(raw, spec.selection, spec.ensemble);
    const best = rankOrder(combined)[0];
    const improved = !joint || combined[best] > joint[0];

    let { restarts, rejections, pivot } = state;
    let note: string;
    let accepted = false;
    if (!from) {
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
    if (accepted) {
      rejections = 0;
      pivot = { noise: cands[best].noise!, fromId: cands[best].id };
    } else if (maxRejections > 0 && rejections >= maxRejections && round < k) {
      restarts++;
      note += `; ${rejections} rejections in a row: restart from a fresh pivot`;
      rejections = 0;
      pivot = undefined;
    }

    const pool = addAndSweep(state.pool, cands, spec, spec.numOutputs);
    return {
      state: { round, restarts, rejections, ...(pivot ? { pivot } : {}), pool },
      round: {
        round,
        sigma: 0,
        best: ranked(pool, spec)[0].scores,
        kept: accepted ? [cands[best].id] : [],
        candidates: cands.map((c, i) => ({ id: c.id, round, sample: c.sample, scores: c.scores, ensembleScore: combined[i], kept: accepted && i === best })),
        note,
      },
    };
  },
};

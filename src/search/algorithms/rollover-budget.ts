// Rollover budget forcing (Kim et al., NeurIPS 2025, "Inference-Time Scaling for Flow Models via
// Stochastic Generation and Rollover Budget Forcing"; code: KAIST-Visual-AI-Group/Flow-Inference-Time-Scaling).
// One particle walks the search solver's S-step grid with the stochastic solver (worker SOLVER_DDIM_ETA;
// their flow-to-SDE conversion plays this role). It starts from the best of n0 = initial_noises noises
// (their init_n_particles, 25 in rbf.yaml): with n0 > 1 a first round takes the n0 noises' x-predictions at
// sigma = 1 (n0 * X NFEs), scores them, and keeps the best by reward as the particle; the bar (the best
// reward accepted so far) starts at its reward, as their pre_correct returns the initial particles' rewards
// as best_rewards. With n0 = 1 there is no such round: the first proposal call takes the one noise's
// x-prediction and has no bar to beat. At step j a proposal is one
// stochastic step sigma_j -> sigma_{j+1} from the current particle, judged by its x-prediction there
// (X NFEs: 1, or 2 with guidance) scored by the reward (the weighted sum of the selection verifiers' raw
// scores, as feynman_kac). Every proposal of a step starts from the same particle, and that particle's
// x-prediction is the one that judged it: the stochastic step takes its evaluation from it (Denoise
// first_predictions), so a proposal costs X and the walk pays n0 * X once more for the noises'
// x-predictions at sigma = 1, as the authors' code evaluates the velocity once per step and the lookahead
// once per proposal. The hard budget `nfes`, less those n0 * X, is spread evenly over the S - 1 proposal
// steps (the first step's share also carries the n0 * X, spent before its proposals).
// Proposals are drawn proposals_per_call at a time until one beats the best reward accepted so far (as
// their code's running best_rewards, which a step that spends its share without improving does not lower)
// or the step's share (its even part plus what earlier steps left) cannot pay for
// another; the best proposal of the step becomes the particle and the unspent share rolls over to the
// next step (the last proposal step may spend all that is left). After step S - 2 the particle's
// x-prediction at sigma_{S-1} is the sample: the solver's last step (to sigma = 0) lands exactly on it
// (x + d * (0 - s) = x - s * d), so it costs nothing more. The plan is an upper bound (= nfes); the
// account says what was spent, never more, and the result how much was left (Accounting.unspent_nfes).
import { combine, rankOrder } from '../ensemble';
import { accountedSolver, gridLevel, stochasticNfes, stochasticSolver, xPredictionNfes } from '../nfe';
import { deriveSeed } from '../seeds';
import type { SavedRef } from '../checkpoint';
import type { ResolvedRequest } from '../resolve';
import { candidateId, outputOf, rowsOf, type Chosen, type Observation, type Results, type StepAlgorithm } from '../step';
import { rewardOf } from './feynman-kac';

interface Held { id: string; sample: SavedRef; xPrediction: SavedRef; scores: Record<string, number>; reward: number }

interface RbfState {
  /** The proposal step in progress: 0 .. S - 2. */
  step: number;
  /** Worker calls made in this step so far. */
  call: number;
  /** Rounds emitted (one per call). */
  rounds: number;
  /** Search NFEs spent so far (the algorithm's own count; the runner's ledger charges the same). */
  spent: number;
  /** NFEs spent in this step so far. */
  stepSpent: number;
  /** This step's share, rollover included. */
  share: number;
  current?: Held;
  /** The best reward accepted so far: a proposal improves when it beats it. */
  bar?: number;
  /** The best proposal of this step so far. */
  best?: Held;
  noise?: SavedRef;
  chosen?: Chosen[];
}

/** NFEs of one proposal: a stochastic step reusing the particle's x-prediction (free), and the x-prediction at its end. */
export function proposalNfes(r: ResolvedRequest, sigmaTo: number): number {
  const search = accountedSolver(r.searchSolver, r.model.guidanceEmbedded);
  return stochasticNfes(search, 1, sigmaTo, true) + xPredictionNfes(search.guidanceScale);
}

/** The x-predictions of the n0 initial noises at sigma = 1 (the kept one's the first step's proposals reuse). */
export function rolloverStartNfes(r: ResolvedRequest): number {
  return initialNoisesOf(r) * xPredictionNfes(accountedSolver(r.searchSolver, r.model.guidanceEmbedded).guidanceScale);
}

function initialNoisesOf(r: ResolvedRequest): number {
  return r.rolloverBudget?.initialNoises ?? 1;
}

/** Noise i of the n0 initial noises: the first keeps the one noise's seed, so n0 = 1 and n0 > 1 share it. */
function initialNoiseSeed(spec: ResolvedRequest, i: number): string {
  return i === 0 ? deriveSeed(spec.seed, 'rollover_budget', 'noise') : deriveSeed(spec.seed, 'rollover_budget', 'noise', i);
}

/** The least budget that takes the initial x-predictions and one proposal at each of the S - 1 steps. */
export function rolloverMinimumNfes(r: ResolvedRequest): number {
  const S = r.searchSolver.steps;
  let total = rolloverStartNfes(r);
  for (let j = 0; j < S - 1; j++) total += proposalNfes(r, gridLevel(S, j + 1));
  return total;
}

function evenShare(spec: ResolvedRequest): number {
  return Math.floor((spec.rolloverBudget!.nfes - rolloverStartNfes(spec)) / (spec.searchSolver.steps - 1));
}

function shareOf(spec: ResolvedRequest, step: number, spent: number, leftover: number): number {
  const S = spec.searchSolver.steps;
  if (step === S - 2) return spec.rolloverBudget!.nfes - spent; // the last proposal step takes what is left
  return evenShare(spec) + leftover + (step === 0 ? rolloverStartNfes(spec) : 0); // the first also pays the start
}

export const rolloverBudgetSearch: StepAlgorithm<RbfState> = {
  name: 'rollover_budget',
  init: (spec) => ({ step: 0, call: 0, rounds: 0, spent: 0, stepSpent: 0, share: shareOf(spec, 0, 0, 0) }),

  propose(state, spec) {
    const b = spec.rolloverBudget!;
    if (state.chosen) return { done: true, chosen: state.chosen };
    const S = spec.searchSolver.steps;
    const n0 = initialNoisesOf(spec);
    if (n0 > 1 && !state.current) {
      // The initial round: the n0 noises' x-predictions at sigma 1, scored; observe keeps the best.
      return {
        done: false,
        actions: [
          { kind: 'noises', id: 'noises', seeds: Array.from({ length: n0 }, (_, i) => initialNoiseSeed(spec, i)) },
          { kind: 'xprediction', id: 'start', what: `rollover_budget: the ${n0} initial noises' x-predictions at sigma 1`, inputs: Array.from({ length: n0 }, (_, i) => outputOf('noises', i)), sigma: gridLevel(S, 0) },
          { kind: 'score', id: 'score', samples: Array.from({ length: n0 }, (_, i) => outputOf('start', i)) },
        ],
      };
    }
    const from = gridLevel(S, state.step);
    const to = gridLevel(S, state.step + 1);
    const cost = proposalNfes(spec, to);
    const start = state.current;
    const startCost = start ? 0 : rolloverStartNfes(spec);
    const count = Math.max(1, Math.min(b.proposalsPerCall, Math.floor((state.share - state.stepSpent - startCost) / cost)));
    const noiseSeed = deriveSeed(spec.seed, 'rollover_budget', 'steps', state.step, state.call);
    return {
      done: false,
      actions: [
        ...(start ? [] : [
          { kind: 'noises' as const, id: 'noises', seeds: [initialNoiseSeed(spec, 0)] },
          { kind: 'xprediction' as const, id: 'start', what: 'rollover_budget: the noise\'s x-prediction at sigma 1', inputs: [outputOf('noises', 0)], sigma: from },
        ]),
        {
          kind: 'solve', id: 'solve', what: `rollover_budget step ${state.step + 1}: ${count} proposals to sigma ${to}`,
          inputs: Array.from({ length: count }, () => start?.sample ?? outputOf('noises', 0)),
          firstPredictions: Array.from({ length: count }, () => start?.xPrediction ?? outputOf('start', 0)),
          sigmaFrom: from, sigmaTo: to, steps: 1, solver: stochasticSolver(spec.searchSolver, 1, b.eta, noiseSeed),
        },
        { kind: 'xprediction', id: 'judged', what: `rollover_budget: x-predictions at sigma ${to}`, inputs: Array.from({ length: count }, (_, i) => outputOf('solve', i)), sigma: to },
        { kind: 'score', id: 'score', samples: Array.from({ length: count }, (_, i) => outputOf('judged', i)) },
      ],
    };
  },

  observe(state, spec, results) {
    if (!results.solve) return observeInitial(state, spec, results);
    const S = spec.searchSolver.steps;
    const to = gridLevel(S, state.step + 1);
    const cost = proposalNfes(spec, to);
    const samples = results.solve.outputs;
    const round = state.rounds + 1;
    const { held: props, combined, best: batchBest } = judged(spec, round, samples, results.judged.outputs, results.score.scores!);
    const best = state.best && state.best.reward >= batchBest.reward ? state.best : batchBest;
    const startCost = results.start ? rolloverStartNfes(spec) : 0;
    const spent = state.spent + startCost + samples.length * cost;
    const stepSpent = state.stepSpent + startCost + samples.length * cost;
    const improved = state.bar === undefined || batchBest.reward > state.bar;
    const stepDone = improved || state.share - stepSpent < cost;
    const noise = state.noise ?? results.noises?.outputs[0];
    const candidates = props.map((p, i) => ({ id: p.id, round, sample: p.sample, scores: p.scores, ensembleScore: combined[i], kept: stepDone && p === best }));
    const extra = { stepShareNfes: String(state.share), proposals: samples.length };
    const roundOut = (kept: string[], note: string) => ({ round, sigma: to, best: (stepDone ? best : state.current ?? best).scores, kept, candidates, note, extra });
    if (!stepDone) {
      return {
        state: { ...state, call: state.call + 1, rounds: round, spent, stepSpent, best, noise },
        round: roundOut(state.current ? [state.current.id] : [], `step ${state.step + 1}: no proposal beats the particle yet (${stepSpent} of ${state.share} NFEs)`),
      };
    }
    const leftover = state.share - stepSpent;
    const note = `step ${state.step + 1}: ${improved ? 'improved' : 'share spent, best proposal taken'}; ${leftover} NFEs roll over`;
    if (state.step === S - 2) {
      // The last solver step lands on the particle's x-prediction: that is the sample.
      const chosen: Chosen[] = [{ id: best.id, round, sample: best.xPrediction, scores: best.scores }];
      return { state: { ...state, rounds: round, spent, stepSpent, current: undefined, best: undefined, noise: undefined, chosen }, round: roundOut([best.id], `${note}; the x-prediction at sigma ${to} is the sample`) };
    }
    return {
      state: {
        step: state.step + 1, call: 0, rounds: round, spent, stepSpent: 0,
        share: shareOf(spec, state.step + 1, spent, leftover), current: best, noise,
        bar: Math.max(state.bar ?? -Infinity, best.reward),
      },
      round: roundOut([best.id], note),
    };
  },
};

/** A round's candidates (sample i judged by its x-prediction xs[i]), their ensemble scores, and the best by reward. */
function judged(spec: ResolvedRequest, round: number, samples: SavedRef[], xs: SavedRef[], raw: Record<string, number[]>) {
  const rows = rowsOf(raw, samples.length);
  const held: Held[] = samples.map((sample, i) => ({ id: candidateId(round, i), sample, xPrediction: xs[i], scores: rows[i], reward: rewardOf(rows[i], spec) }));
  return { held, combined: combine(raw, spec.selection, spec.ensemble), best: held[rankOrder(held.map((h) => h.reward))[0]] };
}

/** The initial round (n0 > 1): the best of the n0 noises by its x-prediction's reward becomes the particle and sets the bar. */
function observeInitial(state: RbfState, spec: ResolvedRequest, results: Results): Observation<RbfState> {
  const noises = results.noises.outputs;
  const round = state.rounds + 1;
  const { held, combined, best } = judged(spec, round, noises, results.start.outputs, results.score.scores!);
  const cost = rolloverStartNfes(spec);
  return {
    state: { ...state, rounds: round, spent: state.spent + cost, stepSpent: state.stepSpent + cost, current: best, bar: best.reward, noise: best.sample },
    round: {
      round, sigma: gridLevel(spec.searchSolver.steps, 0), best: best.scores, kept: [best.id],
      candidates: held.map((h, i) => ({ id: h.id, round, sample: h.sample, scores: h.scores, ensembleScore: combined[i], kept: h === best })),
      note: `initial: the best of ${noises.length} noises by the reward of their x-predictions at sigma 1 (${cost} NFEs) starts the walk; its reward is the bar`,
      extra: { stepShareNfes: String(state.share), proposals: noises.length },
    },
  };
}

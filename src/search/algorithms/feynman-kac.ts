// Feynman-Kac steering (Singhal et al., ICML 2025, "A General Framework for Inference-time Scaling and
// Steering of Diffusion Models"; code: zacharyhorvitz/Fk-Diffusion-Steering). K particles from K noises run
// the stochastic solver (worker SOLVER_DDIM_ETA, DDIM's eta; eta = 1 as their DDIM sampler) on the search
// solver's S-step grid. Every resample_every steps each particle's x-prediction is scored (the one its
// segment's last evaluation gives, captured for free, one grid step above the resampling level);
// its reward r is the weighted sum of the selection verifiers' raw scores, its potential
//   max:        G = exp(lambda * max_{s <= t} r_s)
//   difference: G = exp(lambda * (r_t - r_{t-1}))      (r_0 = 0)
//   sum:        G = exp(lambda * sum_{s <= t} r_s)
// as their code computes them at every resampling time. When the effective sample size
// (sum G)^2 / sum G^2 falls under ess_threshold * K, the particles are resampled: systematic resampling
// with one seeded uniform. Resampled particles share their worker tensor (no copy) and diverge by their
// noise, which is keyed by their position. At sigma = 0 the particles are scored on clean samples; the
// best return as they are (final NFEs 0).
import { combine, rankOrder } from '../ensemble';
import { accountedSolver, gridLevel, stochasticNfes, stochasticSolver } from '../nfe';
import { deriveSeed } from '../seeds';
import type { SavedRef } from '../checkpoint';
import { FkPotentialKind, type ResolvedRequest } from '../resolve';
import { candidateId, captureOf, outputOf, rowsOf, type Action, type Chosen, type StepAlgorithm } from '../step';

interface Particle {
  sample: SavedRef;
  /** max or sum of past rewards (potential max / sum), or the last reward (difference). */
  history: number;
}

interface FkState {
  /** Segments done. */
  segment: number;
  particles: Particle[];
  chosen?: Chosen[];
}

/** Grid step indices where segments end: resample_every, 2 * resample_every, ... below S, then S (sigma = 0). */
export function fkBoundaries(steps: number, every: number): number[] {
  const out: number[] = [];
  for (let j = every; j < steps; j += every) out.push(j);
  out.push(steps);
  return out;
}

/** The sigma levels where particles are weighed. */
export function fkResampleSigmas(r: ResolvedRequest): number[] {
  const s = r.searchSolver.steps;
  return fkBoundaries(s, r.feynmanKac!.resampleEvery).slice(0, -1).map((j) => gridLevel(s, j));
}

/** Closed-form search NFEs for K particles: K * S stochastic steps (the x-predictions weighed are captured: free). */
export function feynmanKacNfes(r: ResolvedRequest, k: number): number {
  const search = accountedSolver(r.searchSolver, r.model.guidanceEmbedded);
  const S = r.searchSolver.steps;
  const ends = fkBoundaries(S, r.feynmanKac!.resampleEvery);
  let total = 0;
  let prev = 0;
  for (const j of ends) {
    total += k * stochasticNfes(search, j - prev, gridLevel(S, j));
    prev = j;
  }
  return total;
}

/** A uniform in [0, 1) from a derived seed (53 bits). */
export function uniformOf(seed: string): number {
  return Number(BigInt(seed) >> 11n) / 2 ** 53;
}

/** Systematic resampling: index i takes the particle whose cumulative weight covers (u + i) / K. */
export function systematicResample(weights: number[], u: number): number[] {
  const k = weights.length;
  const total = weights.reduce((a, b) => a + b, 0);
  const out: number[] = [];
  let cum = weights[0] / total;
  let j = 0;
  for (let i = 0; i < k; i++) {
    const p = (u + i) / k;
    while (p >= cum && j < k - 1) cum += weights[++j] / total;
    out.push(j);
  }
  return out;
}

/** The reward FK steering weighs: the weighted sum of the selection verifiers' raw scores. */
export function rewardOf(scores: Record<string, number>, spec: ResolvedRequest): number {
  return spec.selection.reduce((sum, v) => sum + v.weight * scores[v.name], 0);
}

export const feynmanKacSearch: StepAlgorithm<FkState> = {
  name: 'feynman_kac',
  init: () => ({ segment: 0, particles: [] }),

  propose(state, spec) {
    const f = spec.feynmanKac!;
    if (state.chosen) return { done: true, chosen: state.chosen };
    const S = spec.searchSolver.steps;
    const ends = fkBoundaries(S, f.resampleEvery);
    const j0 = state.segment === 0 ? 0 : ends[state.segment - 1];
    const j1 = ends[state.segment];
    const from = gridLevel(S, j0);
    const to = gridLevel(S, j1);
    const actions: Action[] = [];
    let inputs;
    if (state.segment === 0) {
      const seeds = Array.from({ length: f.k }, (_, i) => deriveSeed(spec.seed, 'feynman_kac', 'noise', i));
      actions.push({ kind: 'noises', id: 'noises', seeds });
      inputs = seeds.map((_, i) => outputOf('noises', i));
    } else {
      inputs = state.particles.map((p) => p.sample);
    }
    const solver = stochasticSolver(spec.searchSolver, j1 - j0, f.eta, deriveSeed(spec.seed, 'feynman_kac', 'steps', state.segment));
    // Above sigma = 0 the segment also returns the x-prediction of its last evaluation (at the last step's
    // start, one grid step above `to`): the one the solver computes anyway, so weighing costs no NFE (as their
    // code weighs the x0-prediction of the current step's evaluation).
    actions.push({
      kind: 'solve', id: 'solve', what: `feynman_kac segment ${state.segment + 1}: ${f.k} particles to sigma ${to}`,
      inputs, sigmaFrom: from, sigmaTo: to, steps: j1 - j0, solver, ...(to > 0 ? { captureAt: to } : {}),
    });
    const solved = inputs.map((_, i) => outputOf('solve', i));
    actions.push({ kind: 'score', id: 'score', samples: to === 0 ? solved : inputs.map((_, i) => captureOf('solve', i)) });
    return { done: false, actions };
  },

  observe(state, spec, results) {
    const f = spec.feynmanKac!;
    const S = spec.searchSolver.steps;
    const segment = state.segment + 1;
    const to = gridLevel(S, fkBoundaries(S, f.resampleEvery)[state.segment]);
    const samples = results.solve.outputs;
    const raw = results.score.scores!;
    const rows = rowsOf(raw, samples.length);
    const combined = combine(raw, spec.selection, spec.ensemble);
    const ids = samples.map((_, i) => candidateId(segment, i));
    if (to === 0) {
      const order = rankOrder(combined);
      const keepIdx = order.slice(0, Math.min(spec.numOutputs, samples.length));
      const keepSet = new Set(keepIdx);
      const chosen: Chosen[] = keepIdx.map((i) => ({ id: ids[i], round: segment, sample: samples[i], scores: rows[i] }));
      return {
        state: { segment, particles: [], chosen },
        round: {
          round: segment, sigma: 0, best: rows[order[0]], kept: keepIdx.map((i) => ids[i]),
          candidates: samples.map((sample, i) => ({ id: ids[i], round: segment, sample, scores: rows[i], ensembleScore: combined[i], kept: keepSet.has(i) })),
          note: `${samples.length} particles scored on clean samples; best ${keepIdx.length} returned`,
        },
      };
    }
    const rewards = rows.map((r) => rewardOf(r, spec));
    const first = state.segment === 0;
    const histories = rewards.map((r, i) => {
      const h = first ? undefined : state.particles[i].history;
      if (f.potential === FkPotentialKind.MAX) return h === undefined ? r : Math.max(h, r);
      if (f.potential === FkPotentialKind.SUM) return (h ?? 0) + r;
      return r;
    });
    const logG = histories.map((h, i) => f.lambda * (f.potential === FkPotentialKind.DIFFERENCE ? h - (first ? 0 : state.particles[i].history) : h));
    const top = Math.max(...logG);
    const w = logG.map((l) => Math.exp(l - top));
    const sum = w.reduce((a, b) => a + b, 0);
    const ess = (sum * sum) / w.reduce((a, b) => a + b * b, 0);
    const resample = ess < f.essThreshold * f.k - 1e-9;
    const idx = resample ? systematicResample(w, uniformOf(deriveSeed(spec.seed, 'feynman_kac', 'resample', segment))) : samples.map((_, i) => i);
    const particles = idx.map((i) => ({ sample: samples[i], history: histories[i] }));
    const keptSet = new Set(idx);
    const best = rankOrder(combined)[0];
    return {
      state: { segment, particles },
      round: {
        round: segment, sigma: to, best: rows[best], kept: [...keptSet].map((i) => ids[i]),
        candidates: samples.map((sample, i) => ({ id: ids[i], round: segment, sample, scores: rows[i], ensembleScore: combined[i], kept: keptSet.has(i) })),
        note: resample
          ? `ESS ${ess.toFixed(2)} of ${f.k}: resampled (${idx.join(' ')})`
          : `ESS ${ess.toFixed(2)} of ${f.k}: kept`,
        extra: { ess, resampled: resample },
      },
    };
  },
};

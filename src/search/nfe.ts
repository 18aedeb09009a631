// The one place NFE arithmetic lives; the worker (python: sampling.solver_nfes) reports the same numbers.
//
// Sigma convention: sigma in [0, 1], 1 = pure noise, 0 = clean.
// Step density: `steps` is the step count of a full 1 -> 0 solve; a partial solve over
// [sigmaTo, sigmaFrom] takes max(1, round(steps * (sigmaFrom - sigmaTo))) steps (half rounds up),
// unless the caller gives an explicit count. The resolved count is what is sent to the worker.
import { Solver, type Recipe, type SolverSettings } from '../gen/noisesearch/worker/v1/worker';

/** Solver, steps and guidance always resolved; eta and noise seed only for a stochastic solver. */
export type ResolvedSolver = Required<Pick<SolverSettings, 'solver' | 'steps' | 'guidanceScale'>> & Pick<SolverSettings, 'eta' | 'noiseSeed'>;

/** Levels are rounded to 1e-9 so that 0.9 - 0.05 - ... lands on exact values and on 0. */
export function roundLevel(sigma: number): number {
  const r = Math.round(sigma * 1e9) / 1e9;
  return r === 0 ? 0 : r; // no -0
}

export function segmentSteps(fullSteps: number, sigmaFrom: number, sigmaTo: number, explicitSteps?: number): number {
  if (explicitSteps && explicitSteps > 0) return explicitSteps;
  const span = roundLevel(sigmaFrom - sigmaTo);
  return Math.max(1, Math.round(roundLevel(fullSteps * span)));
}

export function guidanceFactor(guidanceScale: number): number {
  // Classifier-free guidance evaluates a doubled batch (conditional + unconditional), except at
  // scale 1 (the conditional pass only) and scale 0 (the unconditional pass only).
  return guidanceScale !== 1 && guidanceScale !== 0 ? 2 : 1;
}

/** The guidance scale as NFE accounting sees it: a model with embedded guidance (FLUX) never doubles. */
export function accountedGuidance(guidanceScale: number, guidanceEmbedded?: boolean): number {
  return guidanceEmbedded ? 1 : guidanceScale;
}

/** The solver as NFE accounting sees it (never sent to the worker). */
export function accountedSolver(s: ResolvedSolver, guidanceEmbedded?: boolean): ResolvedSolver {
  return guidanceEmbedded ? { ...s, guidanceScale: 1 } : s;
}

/** NFEs per sample of one solve with an already resolved step count. */
export function solveNfes(solver: Solver, steps: number, sigmaTo: number, guidanceScale: number): number {
  let evals: number;
  if (solver === Solver.SOLVER_HEUN) evals = 2 * steps - (sigmaTo === 0 ? 1 : 0); // last step to 0 is Euler
  else if (solver === Solver.SOLVER_EULER || solver === Solver.SOLVER_DDIM_ETA) evals = steps;
  else throw new Error(`unresolved solver ${solver}`);
  return evals * guidanceFactor(guidanceScale);
}

/** The settings sent to the worker for one segment: the same solver with the segment's step count. */
export function segmentSolver(s: ResolvedSolver, sigmaFrom: number, sigmaTo: number, explicitSteps?: number): ResolvedSolver {
  return { ...s, steps: segmentSteps(s.steps, sigmaFrom, sigmaTo, explicitSteps) };
}

/**
 * NFEs per sample of a solve from sigmaFrom to sigmaTo under the step density rule (or explicit steps).
 * `reusesFirst`: the first step takes its evaluation from the input's x-prediction at sigmaFrom, already
 * paid for (Worker.Denoise first_predictions), so the solve costs one x-prediction fewer.
 */
export function segmentNfes(s: ResolvedSolver, sigmaFrom: number, sigmaTo: number, explicitSteps?: number, reusesFirst = false): number {
  const seg = segmentSolver(s, sigmaFrom, sigmaTo, explicitSteps);
  return solveNfes(seg.solver, seg.steps, roundLevel(sigmaTo), seg.guidanceScale) - (reusesFirst ? xPredictionNfes(seg.guidanceScale) : 0);
}

/** NFEs per sample of a full 1 -> 0 solve. */
export function fullSolveNfes(s: ResolvedSolver): number {
  return solveNfes(s.solver, s.steps, 0, s.guidanceScale);
}

/**
 * One extra evaluation for the x-prediction (Worker.XPrediction). An x-prediction captured by a solve
 * (Denoise capture_sigmas, at a level the solver evaluates: feynman_kac's weighing) costs 0: it is the
 * evaluation the solver makes anyway.
 */
export function xPredictionNfes(guidanceScale: number): number {
  return guidanceFactor(guidanceScale);
}

export interface PathLevel {
  /** Level of the kept samples at the start of the round. */
  from: number;
  /** Level after forward noising (from + delta_forward). */
  up: number;
  /** Level after the backward solve: max(0, up - delta_backward). */
  to: number;
}

/** The rounds of path search; plan and algorithm both use this so they cannot drift apart. */
export function pathLevels(sigmaStart: number, deltaForward: number, deltaBackward: number, maxRounds = Infinity): PathLevel[] {
  const levels: PathLevel[] = [];
  let sigma = roundLevel(sigmaStart);
  while (sigma > 0) {
    const up = roundLevel(sigma + deltaForward);
    const to = Math.max(0, roundLevel(up - deltaBackward));
    levels.push({ from: sigma, up, to });
    if (levels.length > maxRounds) break; // the caller refuses; stop counting
    sigma = to;
  }
  return levels;
}

/**
 * NFEs the worker spends to rebuild a tensor from its recipe (Worker.Materialize replays the whole
 * chain: every denoise and x-prediction on the way from the seed). Seeds, neighbours and forward
 * noising are free. A capture recipe (denoise stopped after k steps) costs its k steps.
 */
export function recipeNfes(r: Recipe | undefined, guidanceEmbedded?: boolean): number {
  if (!r || r.seed || r.put) return 0;
  const g = (scale: number | undefined) => accountedGuidance(scale ?? 1, guidanceEmbedded);
  if (r.neighbour) return recipeNfes(r.neighbour.pivot, guidanceEmbedded);
  if (r.forwardNoise) return recipeNfes(r.forwardNoise.parent, guidanceEmbedded);
  if (r.xPrediction) return guidanceFactor(g(r.xPrediction.guidanceScale)) + recipeNfes(r.xPrediction.parent, guidanceEmbedded);
  if (r.denoise) {
    const d = r.denoise;
    const s = d.solver;
    if (!s) throw new Error('recipe: denoise without solver settings');
    const stopped = d.stopAfterSteps > 0 && d.stopAfterSteps < s.steps;
    // A denoise whose first step reused an x-prediction (d.firstPrediction) replays it first: the same total.
    const own = stopped
      ? solveNfes(s.solver, d.stopAfterSteps, 1, g(s.guidanceScale)) // a stop above sigma = 0: no final Euler step
      : solveNfes(s.solver, s.steps, roundLevel(d.sigmaTo), g(s.guidanceScale));
    return own + recipeNfes(d.parent, guidanceEmbedded);
  }
  throw new Error('recipe: empty');
}

/** Level j of an S-step grid linear in sigma from 1 to 0 (the search solver's own grid). */
export function gridLevel(steps: number, j: number): number {
  return roundLevel(1 - j / steps);
}

/**
 * The stochastic solver (worker SOLVER_DDIM_ETA: one evaluation per step, like Euler) for a segment of
 * `steps` steps, with the search guidance; its noise is keyed by (noiseSeed, position in the call, step).
 */
export function stochasticSolver(search: ResolvedSolver, steps: number, eta: number, noiseSeed: string): ResolvedSolver {
  return { solver: Solver.SOLVER_DDIM_ETA, steps, guidanceScale: search.guidanceScale, eta, noiseSeed };
}

/** NFEs per sample of a stochastic segment (accounted guidance as the search solver's); `reusesFirst` as segmentNfes. */
export function stochasticNfes(search: ResolvedSolver, steps: number, sigmaTo: number, reusesFirst = false): number {
  return solveNfes(Solver.SOLVER_DDIM_ETA, steps, roundLevel(sigmaTo), search.guidanceScale) - (reusesFirst ? xPredictionNfes(search.guidanceScale) : 0);
}

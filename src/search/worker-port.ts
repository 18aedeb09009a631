// The one small interface the search algorithms see of the worker. No framework imports.
// A port is bound to one search: its model, condition, worker namespace and cancellation.
// Implementations: the gRPC client (src/worker/) and in-process fakes for unit tests.
import type { Recipe, SolverSettings } from '../gen/noisesearch/worker/v1/worker';

/** A sample held on the worker, with the recipe that rebuilds it. */
export interface TensorRef {
  handle: string;
  recipe: Recipe;
}

export interface DenoiseCall {
  inputs: TensorRef[];
  solver: SolverSettings; // fully resolved: solver, steps > 0, guidanceScale set
  sigmaFrom: number;
  sigmaTo: number;
  /** x-predictions to capture (the self-supervised verifier needs the one at sigma = 0.4). */
  captureSigmas?: number[];
  releaseInputs?: boolean;
}

export interface DenoiseResult {
  outputs: TensorRef[];
  /** NFEs the worker reports for the whole batch. */
  nfes: number;
  /** captures[i][j]: x-prediction of outputs[j] at captureSigmas[i]. */
  captures: TensorRef[][];
}

export interface ScoreCall {
  samples: TensorRef[];
  verifiers: string[];
  /** One per sample, for verifiers that need an x-prediction. */
  xPredictions?: TensorRef[];
}

export interface ScoreResult {
  /** scores[verifier][i] belongs to samples[i]: matched by index, never by arrival order. */
  scores: Record<string, number[]>;
  verifierCalls: number;
  /** The worker's wall time for the call, when it reports one. */
  wallSeconds?: number;
}

export interface WorkerPort {
  initialNoises(seeds: string[]): Promise<TensorRef[]>;
  neighbours(pivot: TensorRef, tau: number, seeds: string[]): Promise<TensorRef[]>;
  denoise(call: DenoiseCall): Promise<DenoiseResult>;
  forwardNoise(inputs: TensorRef[], sigmaFrom: number, sigmaTo: number, seeds: string[]): Promise<TensorRef[]>;
  xPrediction(inputs: TensorRef[], sigma: number, guidanceScale: number): Promise<{ outputs: TensorRef[]; nfes: number }>;
  score(call: ScoreCall): Promise<ScoreResult>;
  decode(samples: TensorRef[], upscale?: number): Promise<Buffer[]>;
  /** Rebuilds tensors bit-identically from their recipes (after a worker restart or a resume). */
  materialize(recipes: Recipe[]): Promise<TensorRef[]>;
  release(samples: TensorRef[]): Promise<void>;
}

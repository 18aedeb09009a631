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
  /**
   * One per input: its x-prediction at sigmaFrom with this solver's guidance, made earlier (Worker.XPrediction).
   * The first step takes its evaluation from it: the solve costs one evaluation fewer per sample (nfe.ts).
   */
  firstPredictions?: TensorRef[];
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

/** An op's input inside one `run` call: a held tensor, or output `index` (of capture `capture`) of op `op` of the same call. */
export type OpInput = TensorRef | { op: number; index: number; capture?: number };

/** One call of a `run` batch, exactly as its own port method would make it. */
export type PortOp =
  | { kind: 'initialNoises'; seeds: string[] }
  | { kind: 'neighbours'; pivot: OpInput; tau: number; seeds: string[] }
  | { kind: 'forwardNoise'; inputs: OpInput[]; sigmaFrom: number; sigmaTo: number; seeds: string[] }
  | { kind: 'denoise'; call: Omit<DenoiseCall, 'inputs' | 'firstPredictions'> & { inputs: OpInput[]; firstPredictions?: OpInput[] } }
  | { kind: 'xPrediction'; inputs: OpInput[]; sigma: number; guidanceScale: number }
  | { kind: 'score'; call: Omit<ScoreCall, 'samples' | 'xPredictions'> & { samples: OpInput[]; xPredictions?: OpInput[] } }
  | { kind: 'release'; inputs: OpInput[] }
  | { kind: 'decode'; inputs: OpInput[]; upscale?: number };

export interface OpResult {
  outputs: TensorRef[];
  /** denoise: captures[k][j]; xPrediction/denoise: nfes. */
  captures?: TensorRef[][];
  nfes?: number;
  score?: ScoreResult;
  pngs?: Buffer[];
}

/** A port that can send several dependent calls in one round trip (Worker.Run). */
export interface RunPort {
  run(ops: PortOp[]): Promise<OpResult[]>;
}

export function canRun(port: WorkerPort): port is WorkerPort & RunPort {
  return typeof (port as Partial<RunPort>).run === 'function';
}

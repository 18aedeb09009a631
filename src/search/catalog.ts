// What the worker serves (from its Describe answer), in the shape the planner needs.
import { Solver, type DescribeResponse } from '../gen/noisesearch/worker/v1/worker';
import type { ResolvedSolver } from './nfe';

export interface CatalogModel {
  name: string;
  numClasses: number;
  defaultSolver: ResolvedSolver;
  acceptsPrompt: boolean;
  /** Guidance is a model input (FLUX.1-dev): one forward per evaluation at any guidance scale. */
  guidanceEmbedded?: boolean;
}

export interface CatalogVerifier {
  name: string;
  heldOut: boolean;
  needsClassLabel: boolean;
  needsPrompt: boolean;
  /** The self-supervised verifier scores against the x-prediction captured at this level. */
  needsXPredictionAt?: number;
  /** Models whose samples it can score. */
  models: string[];
}

export interface Catalog {
  models: CatalogModel[];
  verifiers: CatalogVerifier[];
  maxRequestSamples: number;
}

export interface Limits {
  maxCandidates: number;
  maxBudgetNfes: number;
  maxOutputs: number;
  maxSteps: number;
}

export const DEFAULT_LIMITS: Limits = {
  maxCandidates: 4096,
  maxBudgetNfes: 10_000_000,
  maxOutputs: 64,
  maxSteps: 1000,
};

// Used only where the worker leaves a model default unset: the paper's SiT sampler shape.
const FALLBACK_SOLVER: ResolvedSolver = { solver: Solver.SOLVER_HEUN, steps: 25, guidanceScale: 1 };

export function catalogFromDescribe(d: DescribeResponse): Catalog {
  return {
    models: d.models.map((m) => ({
      name: m.name,
      numClasses: m.numClasses,
      acceptsPrompt: m.acceptsPrompt,
      ...(m.guidanceEmbedded ? { guidanceEmbedded: true } : {}),
      defaultSolver: {
        solver: m.defaultSolver?.solver || FALLBACK_SOLVER.solver,
        steps: m.defaultSolver?.steps || FALLBACK_SOLVER.steps,
        guidanceScale: m.defaultSolver?.guidanceScale ?? FALLBACK_SOLVER.guidanceScale,
      },
    })),
    verifiers: d.verifiers.map((v) => ({
      name: v.name,
      heldOut: v.heldOut,
      needsClassLabel: v.needsClassLabel,
      needsPrompt: v.needsPrompt,
      ...(v.needsXPredictionAt !== undefined ? { needsXPredictionAt: v.needsXPredictionAt } : {}),
      models: [...v.models],
    })),
    maxRequestSamples: d.maxRequestSamples,
  };
}

export function findModel(catalog: Catalog, name: string): CatalogModel | undefined {
  return catalog.models.find((m) => m.name === name);
}

export function findVerifier(catalog: Catalog, name: string): CatalogVerifier | undefined {
  return catalog.verifiers.find((v) => v.name === name);
}

// Builds the SearchContext an algorithm runs in: accounted, batched worker calls plus scoring.
import type { Plan, Round, VerifierScore } from '../gen/noisesearch/search/v1/search';
import type { NfeLedger } from './budget';
import type { SavedRef } from './checkpoint';
import { findVerifier, type Catalog } from './catalog';
import { combine } from './ensemble';
import { SearchError, cancelled } from './errors';
import { accountedGuidance, segmentSolver, solveNfes, xPredictionNfes, type ResolvedSolver } from './nfe';
import type { ResolvedRequest } from './resolve';
import { deriveSeed } from './seeds';
import type { Scored, SearchContext, SolveOptions, Solved } from './algorithm';
import type { TensorRef, WorkerPort } from './worker-port';

export interface ContextArgs {
  port: WorkerPort;
  catalog: Catalog;
  request: ResolvedRequest;
  plan: Plan;
  ledger: NfeLedger;
  signal: AbortSignal;
  onRound: (round: Round, state: unknown) => void;
  /** Tensors from a checkpoint (the resilient port's adopt). */
  restore: (saved: SavedRef) => TensorRef;
}

/** Denoise one batch and account for it in the given phase; the worker's NFEs must equal the plan's. */
export async function accountedDenoise(
  port: WorkerPort, ledger: NfeLedger, phase: 'search' | 'final', r: ResolvedRequest,
  inputs: TensorRef[], solver: ResolvedSolver, sigmaFrom: number, sigmaTo: number, what: string, opts: SolveOptions = {},
): Promise<Solved> {
  const seg = segmentSolver(solver, sigmaFrom, sigmaTo, opts.steps);
  const expected = inputs.length * solveNfes(seg.solver, seg.steps, sigmaTo, accountedGuidance(seg.guidanceScale, r.model.guidanceEmbedded));
  const at = r.xPredictionAt;
  const capture = opts.capture && at !== undefined && at <= sigmaFrom && at >= sigmaTo;
  if (phase === 'search') ledger.reserve(expected, what);
  else ledger.reserveFinal(expected, what);
  const res = await port.denoise({
    inputs, solver: seg, sigmaFrom, sigmaTo,
    ...(capture ? { captureSigmas: [at] } : {}),
    ...(opts.releaseInputs ? { releaseInputs: true } : {}),
  });
  ledger.charge(res.nfes);
  if (res.outputs.length !== inputs.length) {
    throw new SearchError('INTERNAL', `${what}: the worker returned ${res.outputs.length} samples for ${inputs.length} inputs`);
  }
  if (!capture) return { outputs: res.outputs };
  const xPredictions = res.captures[0];
  if (!xPredictions || xPredictions.length !== inputs.length) {
    throw new SearchError('INTERNAL', `${what}: the worker returned no x-prediction capture at sigma ${at}`);
  }
  return { outputs: res.outputs, xPredictions };
}

/** Score one batch with the given verifiers; every column must match the batch by index. */
export async function scoreBatch(
  port: WorkerPort, ledger: NfeLedger, samples: TensorRef[], verifiers: string[], xPredictions?: TensorRef[],
): Promise<Record<string, number[]>> {
  const res = await port.score({ samples, verifiers, ...(xPredictions ? { xPredictions } : {}) });
  ledger.addVerifierCalls(res.verifierCalls);
  for (const v of verifiers) {
    if (res.scores[v]?.length !== samples.length) {
      throw new SearchError('INTERNAL', `verifier ${v} returned ${res.scores[v]?.length ?? 0} scores for ${samples.length} samples`);
    }
  }
  return res.scores;
}

export function scoredVerifiers(r: ResolvedRequest): string[] {
  return [...r.selection.map((v) => v.name), ...r.reported];
}

export function verifierScoreList(catalog: Catalog, r: ResolvedRequest, scores: Record<string, number>): VerifierScore[] {
  return scoredVerifiers(r)
    .filter((v) => v in scores)
    .map((v) => ({ verifier: v, score: scores[v], heldOut: findVerifier(catalog, v)?.heldOut ?? false }));
}

export function createContext(a: ContextArgs): SearchContext {
  const r = a.request;
  const released = new Set<string>();
  const ctx: SearchContext = {
    port: a.port,
    request: r,
    plan: a.plan,
    ledger: a.ledger,
    signal: a.signal,
    seed: (...labels) => deriveSeed(r.seed, ...labels),
    solve: (inputs, from, to, what, opts) => accountedDenoise(a.port, a.ledger, 'search', r, inputs, r.searchSolver, from, to, what, opts),
    async xPrediction(inputs, sigma, what) {
      const g = r.searchSolver.guidanceScale;
      a.ledger.reserve(inputs.length * xPredictionNfes(accountedGuidance(g, r.model.guidanceEmbedded)), what);
      const res = await a.port.xPrediction(inputs, sigma, g);
      a.ledger.charge(res.nfes);
      if (res.outputs.length !== inputs.length) throw new SearchError('INTERNAL', `${what}: wrong number of x-predictions`);
      return res.outputs;
    },
    async scoreForSelection(samples, xPredictions): Promise<Scored> {
      const raw = await scoreBatch(a.port, a.ledger, samples, scoredVerifiers(r), xPredictions);
      return { raw, combined: ctx.combine(raw) };
    },
    combine: (raw) => combine(raw, r.selection, r.ensemble),
    verifierScores: (scores) => verifierScoreList(a.catalog, r, scores),
    emitRound: (round, state) => a.onRound(round, state),
    restore: (saved) => a.restore(saved),
    restoreCandidate(saved) {
      // A candidate saved without handles is kept for ranking only; its placeholder refs name nothing.
      const gone = (what: string): TensorRef => ({ handle: `released:${saved.id}.${what}`, recipe: {} });
      return {
        id: saved.id,
        round: saved.round,
        scores: saved.scores,
        sample: saved.sample ? a.restore(saved.sample) : gone('sample'),
        ...(saved.noise ? { noise: a.restore(saved.noise) } : {}),
        ...(saved.xPrediction ? { xPrediction: a.restore(saved.xPrediction) } : {}),
      };
    },
    checkCancelled() {
      if (a.signal.aborted) throw cancelled();
    },
    async release(refs) {
      const fresh = refs.filter((x): x is TensorRef => x !== undefined && !released.has(x.handle));
      const unique = [...new Map(fresh.map((x) => [x.handle, x])).values()];
      if (unique.length === 0) return;
      unique.forEach((x) => released.add(x.handle));
      await a.port.release(unique);
    },
  };
  return ctx;
}

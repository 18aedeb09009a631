// The step runner: drives a StepAlgorithm (step.ts) as vLLM's EngineCore.step does a model:
// schedule (algo.propose) -> execute (accounted, batched worker calls) -> update (algo.observe).
// It owns, once for every algorithm: the NFE ledger, verifier calls and time, round events and the
// candidate table, the checkpoint (= the algorithm's state), handle lifetimes, cancellation between
// steps and the rebuild of checkpointed tensors (through the ResilientPort).
import type { Candidate, Round, VerifierScore } from '../gen/noisesearch/search/v1/search';
import { Recipe } from '../gen/noisesearch/worker/v1/worker';
import type { NfeLedger } from './budget';
import { findVerifier, type Catalog } from './catalog';
import { saveRef, type SavedRef } from './checkpoint';
import { SearchError, cancelled } from './errors';
import { accountedGuidance, segmentSolver, solveNfes, xPredictionNfes, type ResolvedSolver } from './nfe';
import type { ResolvedRequest } from './resolve';
import type { ResilientPort } from './resilient-port';
import type { Action, ActionResult, Chosen, Input, Results, RoundOut, StepAlgorithm } from './step';
import type { TensorRef, WorkerPort } from './worker-port';

/** The verifiers a candidate is scored with during the search: held-out ones only when every candidate's scores are asked for. */
export function searchVerifiers(r: ResolvedRequest): string[] {
  return [...r.selection.map((v) => v.name), ...(r.returnOptions.candidateScores ? r.reported : [])];
}

/** Every verifier a returned output is scored with: selection first, then held-out. */
export function outputVerifiers(r: ResolvedRequest): string[] {
  return [...r.selection.map((v) => v.name), ...r.reported];
}

export function verifierScoreList(catalog: Catalog, r: ResolvedRequest, scores: Record<string, number>): VerifierScore[] {
  return outputVerifiers(r)
    .filter((v) => v in scores)
    .map((v) => ({ verifier: v, score: scores[v], heldOut: findVerifier(catalog, v)?.heldOut ?? false }));
}

/** Does a scored verifier need the captured x-prediction? */
function needsXPrediction(catalog: Catalog, verifiers: string[]): boolean {
  return verifiers.some((v) => findVerifier(catalog, v)?.needsXPredictionAt !== undefined);
}

/** Denoise one batch and account for it in the given phase; the worker's NFEs must equal the plan's. */
export async function accountedDenoise(
  port: WorkerPort, ledger: NfeLedger, phase: 'search' | 'final', r: ResolvedRequest,
  inputs: TensorRef[], solver: ResolvedSolver, sigmaFrom: number, sigmaTo: number, what: string,
  opts: { steps?: number; capture?: boolean; captureAt?: number; releaseInputs?: boolean } = {},
): Promise<{ outputs: TensorRef[]; xPredictions?: TensorRef[] }> {
  const seg = segmentSolver(solver, sigmaFrom, sigmaTo, opts.steps);
  const expected = inputs.length * solveNfes(seg.solver, seg.steps, sigmaTo, accountedGuidance(seg.guidanceScale, r.model.guidanceEmbedded));
  const at = r.xPredictionAt;
  const captureLevel = opts.captureAt ?? at;
  const capture = (opts.capture || opts.captureAt !== undefined) && captureLevel !== undefined && captureLevel <= sigmaFrom && captureLevel >= sigmaTo;
  if (phase === 'search') ledger.reserve(expected, what);
  else ledger.reserveFinal(expected, what);
  const res = await port.denoise({
    inputs, solver: seg, sigmaFrom, sigmaTo,
    ...(capture ? { captureSigmas: [captureLevel] } : {}),
    ...(opts.releaseInputs ? { releaseInputs: true } : {}),
  });
  ledger.charge(res.nfes);
  if (res.outputs.length !== inputs.length) {
    throw new SearchError('INTERNAL', `${what}: the worker returned ${res.outputs.length} samples for ${inputs.length} inputs`);
  }
  if (!capture) return { outputs: res.outputs };
  const xPredictions = res.captures[0];
  if (!xPredictions || xPredictions.length !== inputs.length) {
    throw new SearchError('INTERNAL', `${what}: the worker returned no x-prediction capture at sigma ${captureLevel}`);
  }
  return { outputs: res.outputs, xPredictions };
}

/** Score one batch with the given verifiers; every column must match the batch by index. */
export async function scoreBatch(
  port: WorkerPort, ledger: NfeLedger, samples: TensorRef[], verifiers: string[], xPredictions?: TensorRef[],
): Promise<Record<string, number[]>> {
  if (samples.length === 0 || verifiers.length === 0) return Object.fromEntries(verifiers.map((v) => [v, []]));
  const started = performance.now();
  const res = await port.score({ samples, verifiers, ...(xPredictions ? { xPredictions } : {}) });
  // The worker's own time when it reports one, else the call as the orchestrator saw it.
  ledger.addVerifierCalls(res.verifierCalls, res.wallSeconds ?? (performance.now() - started) / 1000);
  for (const v of verifiers) {
    if (res.scores[v]?.length !== samples.length) {
      throw new SearchError('INTERNAL', `verifier ${v} returned ${res.scores[v]?.length ?? 0} scores for ${samples.length} samples`);
    }
  }
  return res.scores;
}

/** Every SavedRef reachable in a JSON-safe value. */
export function savedRefs(value: unknown, out: SavedRef[] = []): SavedRef[] {
  if (Array.isArray(value)) {
    for (const v of value) savedRefs(v, out);
  } else if (value !== null && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    if (typeof o.handle === 'string' && 'recipe' in o) out.push(o as unknown as SavedRef);
    else for (const v of Object.values(o)) savedRefs(v, out);
  }
  return out;
}

export function referencedHandles(value: unknown): Set<string> {
  return new Set(savedRefs(value).map((r) => r.handle));
}

export interface StepRunnerArgs {
  port: ResilientPort;
  catalog: Catalog;
  /** The effective request (post-shrink). */
  spec: ResolvedRequest;
  ledger: NfeLedger;
  signal: AbortSignal;
  /** A round event and the state after it (the checkpoint); awaited, so the hook may be async. */
  onRound: (round: Round, state: unknown) => unknown;
}

export interface RunOutcome {
  chosen: Chosen[];
  /** Every candidate of every round (the resumed rounds' included). */
  candidates: Candidate[];
}

/** Tensors the runner holds on the worker, by handle. */
export class HandleTable {
  private readonly live = new Map<string, TensorRef>();

  constructor(private readonly port: ResilientPort) {}

  /** A state's tensor as a worker ref (adopted by recipe when the runner does not hold it: a resume). */
  ref(saved: SavedRef): TensorRef {
    let t = this.live.get(saved.handle);
    if (!t) {
      t = this.port.adopt(saved.handle, Recipe.fromJSON(saved.recipe));
      this.live.set(saved.handle, t);
    }
    return t;
  }

  hold(refs: TensorRef[]): SavedRef[] {
    for (const r of refs) this.live.set(r.handle, r);
    return refs.map(saveRef);
  }

  /** The worker freed these (release_inputs). */
  forget(refs: TensorRef[]): void {
    for (const r of refs) this.live.delete(r.handle);
  }

  /** The recipe of a state's tensor (the held ref's own object when held). */
  recipeOf(saved: SavedRef): Recipe {
    return this.live.get(saved.handle)?.recipe ?? Recipe.fromJSON(saved.recipe);
  }

  has(handle: string): boolean {
    return this.live.has(handle);
  }

  /** Releases every held tensor whose handle is not in `keep`. */
  async releaseExcept(keep: Set<string>): Promise<void> {
    const drop = [...this.live.values()].filter((t) => !keep.has(t.handle));
    if (drop.length === 0) return;
    for (const t of drop) this.live.delete(t.handle);
    await this.port.release(drop);
  }
}

export class StepRunner {
  readonly handles: HandleTable;

  constructor(private readonly a: StepRunnerArgs) {
    this.handles = new HandleTable(a.port);
  }

  /** Steps the algorithm from `state` (its init, or a checkpoint) until it is done. */
  async run<S>(algo: StepAlgorithm<S>, state: S, priorCandidates: Candidate[] = []): Promise<RunOutcome> {
    const { spec } = this.a;
    const candidates = [...priorCandidates];
    // A checkpoint's tensors are known by recipe only: adopted now (no worker call), rebuilt when first used.
    for (const saved of savedRefs(state)) this.handles.ref(saved);
    for (;;) {
      const proposal = algo.propose(state, spec);
      if (proposal.done) {
        await this.handles.releaseExcept(referencedHandles(proposal.chosen));
        return { chosen: proposal.chosen, candidates };
      }
      if (this.a.signal.aborted) throw cancelled();
      const results = await this.execute(proposal.actions);
      const next = algo.observe(state, spec, results);
      state = next.state;
      const keep = referencedHandles(state);
      for (const h of keep) {
        if (!this.handles.has(h)) throw new SearchError('INTERNAL', `${algo.name}: the state references tensor ${h}, which is no longer held`);
      }
      const round = next.round && this.toRound(next.round);
      await this.handles.releaseExcept(keep);
      if (round) {
        candidates.push(...round.candidates);
        await this.a.onRound(round, state);
      }
    }
  }

  /** Runs a proposal's actions in order; an action may use the outputs of earlier ones. */
  async execute(actions: Action[]): Promise<Results> {
    const { port, spec, ledger } = this.a;
    const results: Results = {};
    const input = (x: Input): TensorRef => {
      if ('handle' in x) return this.handles.ref(x);
      const res = results[x.of];
      const saved = x.capture ? res?.captures?.[x.index] : res?.outputs[x.index];
      if (!saved) throw new SearchError('INTERNAL', `action input ${x.of}[${x.index}]${x.capture ? ' (capture)' : ''} does not exist`);
      return this.handles.ref(saved);
    };
    const exists = (x: Input) => 'handle' in x || !!(x.capture ? results[x.of]?.captures?.[x.index] : results[x.of]?.outputs[x.index]);
    for (const act of actions) {
      if (results[act.id]) throw new SearchError('INTERNAL', `two actions named ${act.id}`);
      const what = act.what ?? act.id;
      let out: ActionResult;
      switch (act.kind) {
        case 'noises':
          out = { outputs: this.handles.hold(await port.initialNoises(act.seeds)) };
          break;
        case 'neighbours':
          out = { outputs: this.handles.hold(await port.neighbours(input(act.pivot), act.tau, act.seeds)) };
          break;
        case 'forward':
          out = { outputs: this.handles.hold(await port.forwardNoise(act.inputs.map(input), act.sigmaFrom, act.sigmaTo, act.seeds)) };
          break;
        case 'solve': {
          if (act.stochastic) throw new SearchError('FAILED_PRECONDITION', `${what}: stochastic solves are not supported by this worker yet`);
          const inputs = act.inputs.map(input);
          const solved = await accountedDenoise(port, ledger, 'search', spec, inputs, act.solver ?? spec.searchSolver, act.sigmaFrom, act.sigmaTo, what, {
            steps: act.steps, capture: act.capture, captureAt: act.captureAt, releaseInputs: act.releaseInputs,
          });
          if (act.releaseInputs) this.handles.forget(inputs);
          out = { outputs: this.handles.hold(solved.outputs), ...(solved.xPredictions ? { captures: this.handles.hold(solved.xPredictions) } : {}) };
          break;
        }
        case 'xprediction': {
          const inputs = act.inputs.map(input);
          const g = spec.searchSolver.guidanceScale;
          ledger.reserve(inputs.length * xPredictionNfes(accountedGuidance(g, spec.model.guidanceEmbedded)), what);
          const res = await port.xPrediction(inputs, act.sigma, g);
          ledger.charge(res.nfes);
          if (res.outputs.length !== inputs.length) throw new SearchError('INTERNAL', `${what}: wrong number of x-predictions`);
          out = { outputs: this.handles.hold(res.outputs) };
          break;
        }
        case 'score': {
          const verifiers = searchVerifiers(spec);
          // x-predictions go along when a verifier needs them and the solve captured them (the capture
          // level may lie off the segment: then a capture input names nothing and none are sent).
          const xs = act.xPredictions && needsXPrediction(this.a.catalog, verifiers) && act.xPredictions.every(exists)
            ? act.xPredictions.map(input) : undefined;
          const scores = await scoreBatch(port, ledger, act.samples.map(input), verifiers, xs);
          out = { outputs: [], scores };
          break;
        }
        default:
          throw new SearchError('INTERNAL', `unknown action ${(act as Action).kind}`);
      }
      results[act.id] = out;
    }
    return results;
  }

  private toRound(r: RoundOut): Round {
    const { catalog, spec, ledger } = this.a;
    return {
      round: r.round,
      nfesSpent: String(ledger.searchNfes),
      sigma: r.sigma,
      bestScores: verifierScoreList(catalog, spec, r.best),
      kept: r.kept,
      candidates: r.candidates.map((c) => ({
        id: c.id,
        round: c.round,
        scores: verifierScoreList(catalog, spec, c.scores),
        ensembleScore: c.ensembleScore,
        kept: c.kept,
        recipe: this.handles.recipeOf(c.sample),
      })),
      note: r.note,
      ...r.extra,
      verifierCalls: String(ledger.verifierCalls),
      verifierSeconds: ledger.verifierSeconds,
    };
  }
}

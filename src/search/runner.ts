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
import { accountedGuidance, segmentNfes, segmentSolver, xPredictionNfes, type ResolvedSolver } from './nfe';
import type { ResolvedRequest } from './resolve';
import type { ResilientPort } from './resilient-port';
import type { Action, ActionResult, Chosen, Input, Results, RoundOut, StepAlgorithm } from './step';
import type { OpInput, PortOp, TensorRef, WorkerPort } from './worker-port';

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

/** The settings sent for one solve segment, its NFEs, and whether the capture level lies on it. */
function solvePlan(r: ResolvedRequest, count: number, solver: ResolvedSolver, sigmaFrom: number, sigmaTo: number, opts: { steps?: number; capture?: boolean; captureAt?: number; firstPredictions?: unknown[] }) {
  const seg = segmentSolver(solver, sigmaFrom, sigmaTo, opts.steps);
  const accounted = { ...seg, guidanceScale: accountedGuidance(seg.guidanceScale, r.model.guidanceEmbedded) };
  const expected = count * segmentNfes(accounted, sigmaFrom, sigmaTo, seg.steps, !!opts.firstPredictions);
  // captureAt (feynman_kac): a level of the algorithm's own, taken at the nearest level the solver evaluates (no NFE).
  const at = opts.captureAt ?? r.xPredictionAt;
  const capture = (!!opts.capture || opts.captureAt !== undefined) && at !== undefined && at <= sigmaFrom && at >= sigmaTo;
  return { seg, expected, capture, at: at! };
}

/** Denoise one batch and account for it in the given phase; the worker's NFEs must equal the plan's. */
export async function accountedDenoise(
  port: WorkerPort, ledger: NfeLedger, phase: 'search' | 'final', r: ResolvedRequest,
  inputs: TensorRef[], solver: ResolvedSolver, sigmaFrom: number, sigmaTo: number, what: string,
  opts: { steps?: number; capture?: boolean; captureAt?: number; releaseInputs?: boolean; firstPredictions?: TensorRef[] } = {},
): Promise<{ outputs: TensorRef[]; xPredictions?: TensorRef[] }> {
  const { seg, expected, capture, at } = solvePlan(r, inputs.length, solver, sigmaFrom, sigmaTo, opts);
  if (opts.firstPredictions && opts.firstPredictions.length !== inputs.length) {
    throw new SearchError('INTERNAL', `${what}: ${opts.firstPredictions.length} first predictions for ${inputs.length} inputs`);
  }
  if (phase === 'search') ledger.reserve(expected, what);
  else ledger.reserveFinal(expected, what);
  const res = await port.denoise({
    inputs, solver: seg, sigmaFrom, sigmaTo,
    ...(capture ? { captureSigmas: [at] } : {}),
    ...(opts.releaseInputs ? { releaseInputs: true } : {}),
    ...(opts.firstPredictions ? { firstPredictions: opts.firstPredictions } : {}),
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
  /**
   * A round event and the state after it (the checkpoint); awaited, so the hook may be async. `kept`:
   * the handles of the round's own kept candidates (id -> handle), held on the worker until it returns.
   */
  onRound: (round: Round, state: unknown, kept: Map<string, string>) => unknown;
}

export interface RunOutcome {
  chosen: Chosen[];
  /** Every candidate of every round (the resumed rounds' included). */
  candidates: Candidate[];
}

/** Tensors the runner holds on the worker, by handle. */
export class HandleTable {
  private readonly live = new Map<string, TensorRef>();
  private pending: TensorRef[] = [];

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

  /** Lets go of these without a call of their own: they are released with the next release (or Worker.Run). */
  letGo(handles: string[]): void {
    for (const h of handles) {
      const t = this.live.get(h);
      if (!t) continue;
      this.live.delete(h);
      this.pending.push(t);
    }
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

  /**
   * Lets go of every held tensor whose handle is not in `keep` (and `also`, tensors held outside the
   * table). On a worker that takes batches the release rides along with the next Worker.Run
   * (`takePending`), unless `now`; otherwise, or with `now`, it is one Release call.
   */
  async releaseExcept(keep: Set<string>, also: TensorRef[] = [], now = false): Promise<void> {
    const drop = [...this.live.values()].filter((t) => !keep.has(t.handle));
    for (const t of drop) this.live.delete(t.handle);
    this.pending.push(...drop, ...also);
    if (this.port.runs && !now) return;
    const all = this.takePending();
    if (all.length > 0) await this.port.release(all);
  }

  /** Every tensor of the table and every pending one, let go of now, to be released by the caller (each once). */
  takeAll(): TensorRef[] {
    this.pending.push(...this.live.values());
    this.live.clear();
    return this.takePending();
  }

  /** Tensors let go of and not yet released on the worker (each once). */
  takePending(): TensorRef[] {
    const all = [...new Map(this.pending.map((t) => [t.handle, t])).values()];
    this.pending = [];
    return all;
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
      // The round's kept candidates stay on the worker through its hook (their previews are decoded
      // there), also those the state let go of: e.g. a zero-order pivot below the pool's best.
      const kept = next.round ? this.heldKept(next.round) : new Map<string, string>();
      const extra = [...kept.values()].filter((h) => !keep.has(h));
      await this.handles.releaseExcept(new Set([...keep, ...extra]));
      if (round) {
        candidates.push(...round.candidates);
        await this.a.onRound(round, state, kept);
      }
      this.handles.letGo(extra);
    }
  }

  /**
   * Runs a proposal's actions in order; an action may use the outputs of earlier ones. On a worker
   * that takes batches (Worker.Run) the whole proposal is one round trip; else one call per action.
   */
  async execute(actions: Action[]): Promise<Results> {
    if (this.a.port.runs) return this.executeFused(actions);
    return this.executeEach(actions);
  }

  /** One Worker.Run call for the whole proposal: the same calls, the same account, one round trip. */
  private async executeFused(actions: Action[]): Promise<Results> {
    const { port, spec, ledger, catalog } = this.a;
    const index = new Map<string, number>();
    const captured = new Set<string>();
    const expected: number[] = [];
    const verifiers = searchVerifiers(spec);
    const exists = (x: Input) => 'handle' in x || (index.has(x.of) && (!x.capture || captured.has(x.of)));
    const input = (x: Input): OpInput => {
      if ('handle' in x) return this.handles.ref(x);
      const op = index.get(x.of);
      if (op === undefined || (x.capture && !captured.has(x.of))) {
        throw new SearchError('INTERNAL', `action input ${x.of}[${x.index}]${x.capture ? ' (capture)' : ''} does not exist`);
      }
      return x.capture ? { op, index: x.index, capture: 0 } : { op, index: x.index };
    };
    const ops: PortOp[] = actions.map((act, i): PortOp => {
      if (index.has(act.id)) throw new SearchError('INTERNAL', `two actions named ${act.id}`);
      let op: PortOp;
      expected[i] = 0;
      switch (act.kind) {
        case 'noises': op = { kind: 'initialNoises', seeds: act.seeds }; break;
        case 'neighbours': op = { kind: 'neighbours', pivot: input(act.pivot), tau: act.tau, seeds: act.seeds }; break;
        case 'forward': op = { kind: 'forwardNoise', inputs: act.inputs.map(input), sigmaFrom: act.sigmaFrom, sigmaTo: act.sigmaTo, seeds: act.seeds }; break;
        case 'solve': {
          if (act.stochastic) throw new SearchError('FAILED_PRECONDITION', `${act.what ?? act.id}: stochastic solves are not supported by this worker yet`);
          const plan = solvePlan(spec, act.inputs.length, act.solver ?? spec.searchSolver, act.sigmaFrom, act.sigmaTo, act);
          expected[i] = plan.expected;
          if (plan.capture) captured.add(act.id);
          op = { kind: 'denoise', call: {
            inputs: act.inputs.map(input), solver: plan.seg, sigmaFrom: act.sigmaFrom, sigmaTo: act.sigmaTo,
            ...(plan.capture ? { captureSigmas: [plan.at] } : {}), ...(act.releaseInputs ? { releaseInputs: true } : {}),
            ...(act.firstPredictions ? { firstPredictions: act.firstPredictions.map(input) } : {}),
          } };
          break;
        }
        case 'xprediction': {
          const g = spec.searchSolver.guidanceScale;
          expected[i] = act.inputs.length * xPredictionNfes(accountedGuidance(g, spec.model.guidanceEmbedded));
          op = { kind: 'xPrediction', inputs: act.inputs.map(input), sigma: act.sigma, guidanceScale: g };
          break;
        }
        case 'score': {
          const xs = act.xPredictions && needsXPrediction(catalog, verifiers) && act.xPredictions.every(exists) ? act.xPredictions.map(input) : undefined;
          op = { kind: 'score', call: { samples: act.samples.map(input), verifiers, ...(xs ? { xPredictions: xs } : {}) } };
          break;
        }
        default:
          throw new SearchError('INTERNAL', `unknown action ${(act as Action).kind}`);
      }
      index.set(act.id, i);
      return op;
    });
    const releases = this.handles.takePending();
    if (releases.length > 0) ops.push({ kind: 'release', inputs: releases }); // last: nothing in this call uses them
    const what = actions.map((a) => a.what ?? a.id).join('; ');
    const nfes = expected.reduce((a, b) => a + b, 0);
    if (nfes > 0) ledger.reserve(nfes, what);
    const res = await port.run(ops);
    if (nfes > 0) ledger.charge(res.reduce((sum, r) => sum + (r.nfes ?? 0), 0));
    const results: Results = {};
    actions.forEach((act, i) => {
      const r = res[i];
      if ((r.nfes ?? 0) !== expected[i]) {
        throw new SearchError('INTERNAL', `${act.what ?? act.id}: the worker reported ${r.nfes ?? 0} NFEs, the plan expected ${expected[i]}`);
      }
      if (r.score) {
        // The worker's own time for this score (a batched call has no per-op time of the orchestrator's).
        ledger.addVerifierCalls(r.score.verifierCalls, r.score.wallSeconds ?? 0);
        results[act.id] = { outputs: [], scores: r.score.scores };
        return;
      }
      const captures = r.captures?.[0];
      results[act.id] = { outputs: this.handles.hold(r.outputs), ...(captured.has(act.id) && captures ? { captures: this.handles.hold(captures) } : {}) };
    });
    actions.forEach((act, i) => {
      const op = ops[i];
      if (act.kind === 'solve' && act.releaseInputs && op.kind === 'denoise') {
        this.handles.forget(op.call.inputs.map((x) => ('handle' in x ? x : x.capture === undefined ? res[x.op].outputs[x.index] : res[x.op].captures![x.capture][x.index])));
      }
    });
    return results;
  }

  private async executeEach(actions: Action[]): Promise<Results> {
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
            ...(act.firstPredictions ? { firstPredictions: act.firstPredictions.map(input) } : {}),
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

  /** The round's own kept candidates (what the dashboard shows for it) whose samples are still held: id -> handle. */
  private heldKept(r: RoundOut): Map<string, string> {
    const kept = new Set(r.kept);
    return new Map(r.candidates.filter((c) => kept.has(c.id) && this.handles.has(c.sample.handle)).map((c) => [c.id, c.sample.handle]));
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

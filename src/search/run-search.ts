// One search end to end, in three parts: run (the plan is emitted, the algorithm steps on the
// StepRunner, round events and checkpoints are emitted), finalize (the chosen noises re-solved with
// the final solver, or the searched samples reused; every returned output scored with every
// verifier) and package (PNGs, tensors, the account). The request is resolved once (prepareSearch).
import type { Output, Plan, Result, Round, SearchRequest } from '../gen/noisesearch/search/v1/search';
import type { Tensor } from '../gen/noisesearch/worker/v1/worker';
import { NfeLedger } from './budget';
import { CHECKPOINT_VERSION, type ResumePoint, type SearchCheckpoint } from './checkpoint';
import type { Catalog, Limits } from './catalog';
import { findVerifier } from './catalog';
import { SearchError, cancelled } from './errors';
import { accountedGuidance, recipeNfes, segmentSolver, solveNfes } from './nfe';
import { prepareSearch, type PreparedSearch } from './plan';
import type { CandidatePreview } from './previews';
import { ALGORITHMS } from './registry';
import { ResilientPort, type RecoverFn } from './resilient-port';
import { accountedDenoise, outputVerifiers, scoreBatch, StepRunner, verifierScoreList, type RunOutcome } from './runner';
import { rowsOf, type Chosen } from './step';
import type { OpInput, PortOp, TensorRef, WorkerPort } from './worker-port';

export interface SearchEvents {
  onPlan?: (plan: Plan) => void;
  /** PNGs of each round's kept candidates (the dashboard's thumbnails), decoded while their tensors are on the worker. */
  onPreviews?: (round: Round, previews: CandidatePreview[]) => void;
  /** Each round with the checkpoint to continue from after it (commit both together); may be async (awaited). */
  onRound?: (round: Round, checkpoint: SearchCheckpoint) => unknown;
  /** Called with the final samples when return.raw_tensor is set, before they are released. */
  fetchTensors?: (samples: TensorRef[]) => Promise<Tensor[]>;
}

export interface RunOptions {
  /** Continue from a committed checkpoint instead of starting afresh. */
  resume?: ResumePoint;
  /** Worker faults: a port to continue on (see ResilientPort), or undefined to fail the search. */
  recover?: RecoverFn;
  /** The request already resolved and planned (by the caller's plan step): not resolved again. */
  prepared?: PreparedSearch;
}

/** What one search holds while it runs. */
interface Session {
  prepared: PreparedSearch;
  catalog: Catalog;
  ledger: NfeLedger;
  port: ResilientPort;
  runner: StepRunner;
  callsBefore: number;
  signal: AbortSignal;
  /** PNGs already made with the final re-solve (finalizeInOneRun). */
  pngs?: Buffer[];
  /** Everything was released on the worker with the final re-solve. */
  released?: boolean;
}

interface FinalSample {
  sample: TensorRef;
  xPrediction?: TensorRef;
  scores: Record<string, number>;
}

export async function runSearch(
  port: WorkerPort, request: SearchRequest, catalog: Catalog, limits: Limits, events: SearchEvents, signal: AbortSignal,
  options: RunOptions = {},
): Promise<Result> {
  const started = performance.now();
  const prepared = options.prepared ?? prepareSearch(request, catalog, limits);
  events.onPlan?.(prepared.plan);
  const s = openSession(port, prepared, catalog, events, signal, options);
  let finals: FinalSample[] = [];
  try {
    const outcome = await run(s, options.resume);
    finals = await finalize(s, outcome.chosen);
    return await packageResult(s, outcome, finals, events, started);
  } finally {
    // Best effort: what is left is also freed with the job's namespace.
    await s.runner.handles.releaseExcept(new Set(), [], true).catch(() => undefined);
    await s.port.release(finals.flatMap((f) => (f.xPrediction ? [f.sample, f.xPrediction] : [f.sample]))).catch(() => undefined);
  }
}

/**
 * Previews of a round's kept candidates, decoded before the runner releases anything of the step
 * (awaited). Best effort and not accounted: after a worker fault the saved handles may name nothing.
 */
async function decodePreviews(events: SearchEvents, raw: WorkerPort, port: ResilientPort, round: Round, keptHandles: Map<string, string>): Promise<void> {
  // Straight to the worker (raw): not a search call, so neither counted in worker_calls nor recovered.
  if (!events.onPreviews || port.faults > 0) return;
  const kept = [...keptHandles];
  const real = kept.length > 0 ? port.peek(kept.map(([, handle]) => ({ handle, recipe: {} }))) : undefined;
  if (!real) return;
  try {
    const pngs = await raw.decode(real, 1);
    events.onPreviews(round, kept.map(([id], i) => ({ id, png: Buffer.from(pngs[i]) })));
  } catch {
    // a preview is never worth failing a search for
  }
}

function openSession(
  port: WorkerPort, prepared: PreparedSearch, catalog: Catalog, events: SearchEvents, signal: AbortSignal, options: RunOptions,
): Session {
  const { spec, plan } = prepared;
  const ledger = new NfeLedger(Number(plan.searchNfes), spec.budgetNfes, Number(plan.finalNfes));
  const resilient = new ResilientPort(port, {
    recover: options.recover,
    signal,
    onRecoveryNfes: (nfes) => ledger.chargeRecovery(nfes),
    recipeNfes: (recipe) => recipeNfes(recipe, spec.model.guidanceEmbedded),
  });
  const cp = options.resume?.checkpoint;
  if (cp) {
    if (cp.algorithm !== spec.algorithm || cp.plannedSearchNfes !== Number(plan.searchNfes)) {
      throw new SearchError('FAILED_PRECONDITION',
        `cannot resume: the checkpoint is of ${cp.algorithm} planned at ${cp.plannedSearchNfes} NFEs, the request now plans ${spec.algorithm} at ${plan.searchNfes}`);
    }
    ledger.searchNfes = cp.ledger.searchNfes;
    ledger.verifierCalls = cp.ledger.verifierCalls;
    ledger.recoveryNfes = cp.ledger.recoveryNfes;
    ledger.verifierSeconds = cp.ledger.verifierSeconds ?? 0;
  }
  const callsBefore = cp?.workerCalls ?? 0;
  let roundsEmitted = cp?.rounds ?? 0;
  const session: Session = {
    prepared, catalog, ledger, port: resilient, callsBefore, signal,
    runner: new StepRunner({
      port: resilient, catalog, spec, ledger, signal,
      onRound: async (round, state, kept) => {
        roundsEmitted++;
        await events.onRound?.(round, {
          version: CHECKPOINT_VERSION,
          algorithm: spec.algorithm,
          round: round.round,
          rounds: roundsEmitted,
          plannedSearchNfes: Number(plan.searchNfes),
          ledger: { searchNfes: ledger.searchNfes, verifierCalls: ledger.verifierCalls, recoveryNfes: ledger.recoveryNfes, verifierSeconds: ledger.verifierSeconds },
          workerCalls: callsBefore + resilient.calls,
          state,
        });
        await decodePreviews(events, port, resilient, round, kept);
      },
    }),
  };
  return session;
}

/** The search rounds: the algorithm stepped from its start (or the checkpoint's state) to its chosen candidates. */
async function run(s: Session, resume?: ResumePoint): Promise<RunOutcome> {
  const { spec, plan } = s.prepared;
  const algo = ALGORITHMS[spec.algorithm];
  const outcome = resume
    ? await s.runner.run(algo, resume.checkpoint.state, resume.rounds.flatMap((r) => r.candidates))
    : await s.runner.run(algo, algo.init(spec));
  // An upper-bound plan (rollover_budget) may leave NFEs unspent; the ledger never lets it overspend.
  if (plan.searchNfesUpperBound ? s.ledger.searchNfes > Number(plan.searchNfes) : s.ledger.searchNfes !== Number(plan.searchNfes)) {
    throw new SearchError('INTERNAL', `search spent ${s.ledger.searchNfes} NFEs, the plan says ${plan.searchNfes}`);
  }
  if (s.signal.aborted) throw cancelled();
  return outcome;
}

/** The returned samples: re-solved with the final solver, or the searched ones; each scored with every verifier. */
async function finalize(s: Session, chosen: Chosen[]): Promise<FinalSample[]> {
  const { spec, plan } = s.prepared;
  const ref = (x: Chosen['sample']) => s.runner.handles.ref(x);
  let finals: FinalSample[];
  if (plan.finalReusesSearch) {
    finals = chosen.map((c) => ({ sample: ref(c.sample), ...(c.xPrediction ? { xPrediction: ref(c.xPrediction) } : {}), scores: c.scores }));
    // Held-out verifiers scored during the search only when every candidate's scores were asked for:
    // the rest are scored in packageResult (with the decode, in one round trip where the worker can).
  } else if (s.port.runs) {
    finals = await finalizeInOneRun(s, chosen.map((c) => ref(c.noise!)));
  } else {
    const solved = await accountedDenoise(
      s.port, s.ledger, 'final', spec, chosen.map((c) => ref(c.noise!)), spec.finalSolver, 1, 0,
      `final denoise of ${chosen.length} outputs`, { capture: true },
    );
    const rows = rowsOf(await scoreBatch(s.port, s.ledger, solved.outputs, outputVerifiers(spec), solved.xPredictions), solved.outputs.length);
    finals = solved.outputs.map((sample, i) => ({ sample, ...(solved.xPredictions ? { xPrediction: solved.xPredictions[i] } : {}), scores: rows[i] }));
  }
  if (s.ledger.finalNfes !== Number(plan.finalNfes)) {
    throw new SearchError('INTERNAL', `final denoise spent ${s.ledger.finalNfes} NFEs, the plan says ${plan.finalNfes}`);
  }
  return finals;
}

/**
 * The final re-solve in one Worker.Run: denoise (capturing for the verifiers), score with every
 * verifier, decode, and release what is no longer needed; the same calls as made one by one.
 */
async function finalizeInOneRun(s: Session, noises: TensorRef[]): Promise<FinalSample[]> {
  const { spec } = s.prepared;
  const { ledger, port } = s;
  const count = noises.length;
  const solver = segmentSolver(spec.finalSolver, 1, 0);
  const expected = count * solveNfes(solver.solver, solver.steps, 0, accountedGuidance(solver.guidanceScale, spec.model.guidanceEmbedded));
  const at = spec.xPredictionAt;
  const verifiers = outputVerifiers(spec);
  const needX = at !== undefined && verifiers.some((v) => findVerifier(s.catalog, v)?.needsXPredictionAt !== undefined);
  const outs = Array.from({ length: count }, (_, i) => ({ op: 0, index: i }));
  const ops: PortOp[] = [
    { kind: 'denoise', call: { inputs: noises, solver, sigmaFrom: 1, sigmaTo: 0, ...(at !== undefined ? { captureSigmas: [at] } : {}) } },
    { kind: 'score', call: { samples: outs, verifiers, ...(needX ? { xPredictions: outs.map((o) => ({ ...o, capture: 0 })) } : {}) } },
  ];
  if (spec.returnOptions.png) ops.push({ kind: 'decode', inputs: outs, upscale: spec.returnOptions.pngUpscale });
  // Every search tensor can go now (the noises too: the outputs' recipes rebuild them).
  // And the outputs themselves once scored and decoded, unless their tensors are still to be fetched.
  const releases: OpInput[] = [...s.runner.handles.takeAll()];
  if (!spec.returnOptions.rawTensor) releases.push(...outs, ...(at !== undefined ? outs.map((o) => ({ ...o, capture: 0 })) : []));
  if (releases.length > 0) ops.push({ kind: 'release', inputs: releases });
  s.released = !spec.returnOptions.rawTensor;
  ledger.reserveFinal(expected, `final denoise of ${count} outputs`);
  const res = await port.run(ops);
  ledger.charge(res[0].nfes ?? 0);
  const samples = res[0].outputs;
  const xPredictions = at !== undefined ? res[0].captures?.[0] : undefined;
  if (samples.length !== count || (at !== undefined && xPredictions?.length !== count)) {
    throw new SearchError('INTERNAL', `final denoise: the worker returned ${samples.length} samples for ${count} inputs`);
  }
  const score = res[1].score!;
  ledger.addVerifierCalls(score.verifierCalls, score.wallSeconds ?? 0);
  if (spec.returnOptions.png) s.pngs = res[2].pngs;
  const rows = rowsOf(score.scores, count);
  return samples.map((sample, i) => ({ sample, ...(xPredictions ? { xPrediction: xPredictions[i] } : {}), scores: rows[i] }));
}

/** PNGs, tensors, recipes, scores and the account. */
async function packageResult(s: Session, outcome: RunOutcome, finals: FinalSample[], events: SearchEvents, started: number): Promise<Result> {
  const { spec, plan } = s.prepared;
  const { ledger, port } = s;
  const samples = finals.map((f) => f.sample);
  const missing = outputVerifiers(spec).filter((v) => finals.some((f) => !(v in f.scores)));
  const needX = missing.some((v) => findVerifier(s.catalog, v)?.needsXPredictionAt !== undefined);
  const xs = needX && finals.every((f) => f.xPrediction) ? finals.map((f) => f.xPrediction!) : undefined;
  let pngs: Buffer[] = s.pngs ?? [];
  let extra: Record<string, number[]> = {};
  if (s.released) {
    // Scored, decoded and released with the final re-solve (finalizeInOneRun).
  } else if (port.runs) {
    // One round trip: the held-out scores of the outputs, their PNGs, and the releases still pending.
    const ops: PortOp[] = [];
    if (missing.length > 0) ops.push({ kind: 'score', call: { samples, verifiers: missing, ...(xs ? { xPredictions: xs } : {}) } });
    if (spec.returnOptions.png && s.pngs === undefined) ops.push({ kind: 'decode', inputs: samples, upscale: spec.returnOptions.pngUpscale });
    // The outputs themselves too, once decoded, unless their tensors are still to be fetched.
    const done = spec.returnOptions.rawTensor ? [] : finals.flatMap((f) => (f.xPrediction ? [f.sample, f.xPrediction] : [f.sample]));
    const held = spec.returnOptions.rawTensor ? s.runner.handles.takePending() : s.runner.handles.takeAll();
    const releases = [...new Map([...held, ...done].map((t) => [t.handle, t])).values()];
    if (releases.length > 0) ops.push({ kind: 'release', inputs: releases });
    const res = ops.length > 0 ? await port.run(ops) : [];
    ops.forEach((op, i) => {
      if (op.kind === 'score') {
        const sc = res[i].score!;
        ledger.addVerifierCalls(sc.verifierCalls, sc.wallSeconds ?? 0);
        extra = sc.scores;
      } else if (op.kind === 'decode') pngs = res[i].pngs!;
    });
  } else {
    if (missing.length > 0) extra = await scoreBatch(port, ledger, samples, missing, xs);
    if (spec.returnOptions.png && s.pngs === undefined) pngs = await port.decode(samples, spec.returnOptions.pngUpscale);
  }
  if (missing.length > 0) {
    const rows = rowsOf(extra, finals.length);
    finals = finals.map((f, i) => ({ ...f, scores: { ...f.scores, ...rows[i] } }));
  }
  const tensors = spec.returnOptions.rawTensor && events.fetchTensors ? await events.fetchTensors(await port.resolve(samples)) : [];
  const outputs: Output[] = finals.map((f, i) => ({
    rank: i + 1,
    png: pngs[i] ?? Buffer.alloc(0),
    tensor: tensors[i],
    recipe: f.sample.recipe,
    searchRecipe: s.runner.handles.recipeOf(outcome.chosen[i].sample),
    scores: verifierScoreList(s.catalog, spec, f.scores),
    candidateId: outcome.chosen[i].id,
  }));
  // Released before the account is taken, so that worker_calls counts every call of the search.
  await s.runner.handles.releaseExcept(new Set(), finals.flatMap((f) => (f.xPrediction ? [f.sample, f.xPrediction] : [f.sample])), true);
  const total = ledger.searchNfes + ledger.finalNfes + ledger.recoveryNfes;
  return {
    outputs,
    accounting: {
      searchNfes: String(ledger.searchNfes),
      finalNfes: String(ledger.finalNfes),
      totalNfes: String(total),
      verifierCalls: String(ledger.verifierCalls),
      plannedSearchNfes: plan.searchNfes,
      budgetNfes: plan.budgetNfes,
      workerCalls: String(s.callsBefore + port.calls),
      recoveryNfes: String(ledger.recoveryNfes),
      verifierSeconds: ledger.verifierSeconds,
      ...(plan.searchNfesUpperBound ? { unspentNfes: String(Number(plan.searchNfes) - ledger.searchNfes) } : {}),
    },
    wallSeconds: (performance.now() - started) / 1000,
    candidates: spec.returnOptions.candidateScores ? outcome.candidates : [],
    plan,
  };
}

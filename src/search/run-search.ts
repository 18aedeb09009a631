// One search end to end: resolve + plan (emitted), the algorithm's rounds (emitted), the final
// denoise of the chosen noises, final scores with every verifier, PNGs, and the account.
import type { Output, Plan, Result, Round, SearchRequest } from '../gen/noisesearch/search/v1/search';
import type { Tensor } from '../gen/noisesearch/worker/v1/worker';
import type { ScoredCandidate } from './algorithm';
import { rowsOf } from './algorithm';
import { NfeLedger } from './budget';
import { CHECKPOINT_VERSION, savedRecipe, type ResumePoint, type SearchCheckpoint } from './checkpoint';
import type { Catalog, Limits } from './catalog';
import { accountedDenoise, createContext, scoreBatch, scoredVerifiers, verifierScoreList } from './context';
import { SearchError, cancelled } from './errors';
import { recipeNfes } from './nfe';
import { planSearch } from './plan';
import { ALGORITHMS } from './registry';
import { keptHandles, type CandidatePreview } from './previews';
import { resolveRequest } from './resolve';
import { ResilientPort, type RecoverFn } from './resilient-port';
import type { TensorRef, WorkerPort } from './worker-port';

export interface SearchEvents {
  onPlan?: (plan: Plan) => void;
  /** Each round with the checkpoint to continue from after it (commit both together). */
  onRound?: (round: Round, checkpoint: SearchCheckpoint) => void;
  /** PNGs of each round's kept candidates, decoded right after the round while their tensors are on the worker. */
  onPreviews?: (round: Round, previews: CandidatePreview[]) => void;
  /** Called with the final samples when return.raw_tensor is set, before they are released. */
  fetchTensors?: (samples: TensorRef[]) => Promise<Tensor[]>;
}

export interface RunOptions {
  /** Continue from a committed checkpoint instead of starting afresh. */
  resume?: ResumePoint;
  /** Worker faults: a port to continue on (see ResilientPort), or undefined to fail the search. */
  recover?: RecoverFn;
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
  const resolved = resolveRequest(request, catalog, limits);
  const plan = planSearch(resolved, catalog, limits);
  events.onPlan?.(plan);

  const ledger = new NfeLedger(Number(plan.searchNfes), resolved.budgetNfes, Number(plan.finalNfes));
  const resilient = new ResilientPort(port, {
    recover: options.recover,
    signal,
    onRecoveryNfes: (nfes) => ledger.chargeRecovery(nfes),
    recipeNfes: (recipe) => recipeNfes(recipe, resolved.model.guidanceEmbedded),
  });
  const resume = options.resume;
  let callsBefore = 0;
  if (resume) {
    const cp = resume.checkpoint;
    if (cp.algorithm !== resolved.algorithm || cp.plannedSearchNfes !== Number(plan.searchNfes)) {
      throw new SearchError('FAILED_PRECONDITION',
        `cannot resume: the checkpoint is of ${cp.algorithm} planned at ${cp.plannedSearchNfes} NFEs, the request now plans ${resolved.algorithm} at ${plan.searchNfes}`);
    }
    ledger.searchNfes = cp.ledger.searchNfes;
    ledger.verifierCalls = cp.ledger.verifierCalls;
    ledger.recoveryNfes = cp.ledger.recoveryNfes;
    callsBefore = cp.workerCalls;
  }
  let roundsEmitted = resume?.checkpoint.rounds ?? 0;
  const ctx = createContext({
    port: resilient, catalog, request: resolved, plan, ledger, signal,
    restore: (saved) => resilient.adopt(saved.handle, savedRecipe(saved)),
    onRound: (round, state) => {
      roundsEmitted++;
      events.onRound?.(round, {
        version: CHECKPOINT_VERSION,
        algorithm: resolved.algorithm,
        round: round.round,
        rounds: roundsEmitted,
        plannedSearchNfes: Number(plan.searchNfes),
        ledger: { searchNfes: ledger.searchNfes, verifierCalls: ledger.verifierCalls, recoveryNfes: ledger.recoveryNfes },
        workerCalls: callsBefore + resilient.calls,
        state,
      });
      // Previews: issued before the algorithm's next call (which may release the kept tensors); best effort, not accounted.
      const kept = events.onPreviews && resilient.faults === 0 ? [...keptHandles(round, state)] : [];
      const real = kept.length > 0 ? resilient.peek(kept.map(([, handle]) => ({ handle, recipe: {} }))) : undefined;
      if (real) {
        port.decode(real, 1).then((pngs) => events.onPreviews!(round, kept.map(([id], i) => ({ id, png: Buffer.from(pngs[i]) }))), () => undefined);
      }
    },
  });

  let chosen: ScoredCandidate[] = [];
  let finals: FinalSample[] = [];
  const releaseAll = () =>
    ctx.release([...chosen.flatMap((c) => [c.sample, c.noise, c.xPrediction]), ...finals.flatMap((f) => [f.sample, f.xPrediction])]);
  try {
    const outcome = await ALGORITHMS[resolved.algorithm].run(
      ctx, resume && { round: resume.checkpoint.round, state: resume.checkpoint.state, rounds: resume.rounds },
    );
    chosen = outcome.chosen;
    if (ledger.searchNfes !== Number(plan.searchNfes)) {
      throw new SearchError('INTERNAL', `search spent ${ledger.searchNfes} NFEs, the plan says ${plan.searchNfes}`);
    }
    if (signal.aborted) throw cancelled();

    if (plan.finalReusesSearch) {
      finals = chosen.map((c) => ({ sample: c.sample, xPrediction: c.xPrediction, scores: c.scores }));
    } else {
      const solved = await accountedDenoise(
        resilient, ledger, 'final', resolved, chosen.map((c) => c.noise!), resolved.finalSolver, 1, 0,
        `final denoise of ${chosen.length} outputs`, { capture: true },
      );
      const raw = await scoreBatch(resilient, ledger, solved.outputs, scoredVerifiers(resolved), solved.xPredictions);
      const rows = rowsOf(raw, solved.outputs.length);
      finals = solved.outputs.map((sample, i) => ({ sample, xPrediction: solved.xPredictions?.[i], scores: rows[i] }));
    }
    if (ledger.finalNfes !== Number(plan.finalNfes)) {
      throw new SearchError('INTERNAL', `final denoise spent ${ledger.finalNfes} NFEs, the plan says ${plan.finalNfes}`);
    }

    const samples = finals.map((f) => f.sample);
    const pngs = resolved.returnOptions.png ? await resilient.decode(samples, resolved.returnOptions.pngUpscale) : [];
    const tensors = resolved.returnOptions.rawTensor && events.fetchTensors ? await events.fetchTensors(await resilient.resolve(samples)) : [];

    const outputs: Output[] = finals.map((f, i) => ({
      rank: i + 1,
      png: pngs[i] ?? Buffer.alloc(0),
      tensor: tensors[i],
      recipe: f.sample.recipe,
      searchRecipe: chosen[i].sample.recipe,
      scores: verifierScoreList(catalog, resolved, f.scores),
      candidateId: chosen[i].id,
    }));
    await releaseAll();
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
        workerCalls: String(callsBefore + resilient.calls),
        recoveryNfes: String(ledger.recoveryNfes),
      },
      wallSeconds: (performance.now() - started) / 1000,
      candidates: resolved.returnOptions.candidateScores ? outcome.candidates : [],
      plan,
    };
  } catch (e) {
    await releaseAll().catch(() => undefined); // best effort: handles also expire on the worker
    throw e;
  }
}

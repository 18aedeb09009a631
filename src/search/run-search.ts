// One search end to end: resolve + plan (emitted), the algorithm's rounds (emitted), the final
// denoise of the chosen noises, final scores with every verifier, PNGs, and the account.
import type { Output, Plan, Result, Round, SearchRequest } from '../gen/noisesearch/search/v1/search';
import type { Tensor } from '../gen/noisesearch/worker/v1/worker';
import type { ScoredCandidate } from './algorithm';
import { rowsOf } from './algorithm';
import { NfeLedger } from './budget';
import type { Catalog, Limits } from './catalog';
import { accountedDenoise, createContext, scoreBatch, scoredVerifiers, verifierScoreList } from './context';
import { SearchError, cancelled } from './errors';
import { planSearch } from './plan';
import { ALGORITHMS } from './registry';
import { resolveRequest } from './resolve';
import type { TensorRef, WorkerPort } from './worker-port';

export interface SearchEvents {
  onPlan?: (plan: Plan) => void;
  onRound?: (round: Round) => void;
  /** Called with the final samples when return.raw_tensor is set, before they are released. */
  fetchTensors?: (samples: TensorRef[]) => Promise<Tensor[]>;
}

interface FinalSample {
  sample: TensorRef;
  xPrediction?: TensorRef;
  scores: Record<string, number>;
}

export async function runSearch(
  port: WorkerPort, request: SearchRequest, catalog: Catalog, limits: Limits, events: SearchEvents, signal: AbortSignal,
): Promise<Result> {
  const started = performance.now();
  const resolved = resolveRequest(request, catalog, limits);
  const plan = planSearch(resolved, catalog, limits);
  events.onPlan?.(plan);

  const counted = countingPort(port);
  const ledger = new NfeLedger(Number(plan.searchNfes), resolved.budgetNfes, Number(plan.finalNfes));
  const ctx = createContext({
    port: counted.port, catalog, request: resolved, plan, ledger, signal, onRound: (r) => events.onRound?.(r),
  });

  let chosen: ScoredCandidate[] = [];
  let finals: FinalSample[] = [];
  const releaseAll = () =>
    ctx.release([...chosen.flatMap((c) => [c.sample, c.noise, c.xPrediction]), ...finals.flatMap((f) => [f.sample, f.xPrediction])]);
  try {
    const outcome = await ALGORITHMS[resolved.algorithm].run(ctx);
    chosen = outcome.chosen;
    if (ledger.searchNfes !== Number(plan.searchNfes)) {
      throw new SearchError('INTERNAL', `search spent ${ledger.searchNfes} NFEs, the plan says ${plan.searchNfes}`);
    }
    if (signal.aborted) throw cancelled();

    if (plan.finalReusesSearch) {
      finals = chosen.map((c) => ({ sample: c.sample, xPrediction: c.xPrediction, scores: c.scores }));
    } else {
      const solved = await accountedDenoise(
        counted.port, ledger, 'final', resolved, chosen.map((c) => c.noise!), resolved.finalSolver, 1, 0,
        `final denoise of ${chosen.length} outputs`, { capture: true },
      );
      const raw = await scoreBatch(counted.port, ledger, solved.outputs, scoredVerifiers(resolved), solved.xPredictions);
      const rows = rowsOf(raw, solved.outputs.length);
      finals = solved.outputs.map((sample, i) => ({ sample, xPrediction: solved.xPredictions?.[i], scores: rows[i] }));
    }
    if (ledger.finalNfes !== Number(plan.finalNfes)) {
      throw new SearchError('INTERNAL', `final denoise spent ${ledger.finalNfes} NFEs, the plan says ${plan.finalNfes}`);
    }

    const samples = finals.map((f) => f.sample);
    const pngs = resolved.returnOptions.png ? await counted.port.decode(samples, resolved.returnOptions.pngUpscale) : [];
    const tensors = resolved.returnOptions.rawTensor && events.fetchTensors ? await events.fetchTensors(samples) : [];

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
        workerCalls: String(counted.calls()),
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

/** Counts worker calls for the account, without the algorithms knowing. */
function countingPort(port: WorkerPort): { port: WorkerPort; calls: () => number } {
  let calls = 0;
  const wrapped = new Proxy(port, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        calls++;
        return value.apply(target, args);
      };
    },
  });
  return { port: wrapped, calls: () => calls };
}

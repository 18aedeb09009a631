// Runs a search on the fake worker and collects what the service layer would see.
import type { Plan, Result, Round, SearchRequest } from '../../gen/noisesearch/search/v1/search';
import { DEFAULT_LIMITS } from '../catalog';
import { runSearch } from '../run-search';
import { FAKE_CATALOG, FakeWorker, type FakeWorkerOptions } from './fake-worker';

export interface FakeRun {
  worker: FakeWorker;
  result: Result;
  plan: Plan;
  rounds: Round[];
}

export async function runOnFake(req: SearchRequest, opts: FakeWorkerOptions = {}, signal = new AbortController().signal): Promise<FakeRun> {
  const worker = new FakeWorker({ condition: req.condition, ...opts });
  const rounds: Round[] = [];
  let plan: Plan | undefined;
  const result = await runSearch(worker, req, FAKE_CATALOG, DEFAULT_LIMITS, { onPlan: (p) => (plan = p), onRound: (r) => rounds.push(r) }, signal);
  return { worker, result, plan: plan!, rounds };
}

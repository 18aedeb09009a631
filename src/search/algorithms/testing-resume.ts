// Test helper of the algorithms beyond the paper: run a request on the fake worker whole, then resume
// it from every checkpoint, and expect the same result, rounds and account (everything but timing).
import type { Result, Round, SearchRequest } from '../../gen/noisesearch/search/v1/search';
import { DEFAULT_LIMITS } from '../catalog';
import { decodeCheckpoint, encodeCheckpoint, type SearchCheckpoint } from '../checkpoint';
import { runSearch } from '../run-search';
import { FAKE_CATALOG, FakeWorker } from '../testing/fake-worker';

export interface FakeRunWithCheckpoints { result: Result; rounds: Round[]; checkpoints: SearchCheckpoint[]; worker: FakeWorker }

export async function runWithCheckpoints(req: SearchRequest, resumeAt?: { checkpoint: SearchCheckpoint; rounds: Round[] }): Promise<FakeRunWithCheckpoints> {
  const rounds: Round[] = [];
  const checkpoints: SearchCheckpoint[] = [];
  const worker = new FakeWorker({ condition: req.condition });
  const result = await runSearch(worker, req, FAKE_CATALOG, DEFAULT_LIMITS, {
    onRound: (r, cp) => { rounds.push(r); checkpoints.push(decodeCheckpoint(encodeCheckpoint(cp))); },
  }, new AbortController().signal, { resume: resumeAt, recover: async () => { worker.restart(); return worker; } });
  return { result, rounds, checkpoints, worker };
}

export function comparable(r: Result) {
  const { wallSeconds: _w, accounting, ...rest } = r;
  const { workerCalls: _c, recoveryNfes: _r, totalNfes: _t, verifierSeconds: _v, ...acc } = accounting!;
  return { ...rest, accounting: acc };
}

const timeless = (r: Round) => ({ ...r, verifierSeconds: 0 });

/** Resumes from every checkpoint and expects the uninterrupted run; returns the whole run. */
export async function resumeMatches(req: SearchRequest): Promise<FakeRunWithCheckpoints> {
  const whole = await runWithCheckpoints(req);
  expect(whole.checkpoints).toHaveLength(whole.rounds.length);
  for (let k = 0; k < whole.checkpoints.length; k++) {
    const resumed = await runWithCheckpoints(req, { checkpoint: whole.checkpoints[k], rounds: whole.rounds.slice(0, k + 1) });
    expect(comparable(resumed.result)).toEqual(comparable(whole.result));
    expect(resumed.rounds.map(timeless)).toEqual(whole.rounds.slice(k + 1).map(timeless));
    expect(resumed.worker.liveHandles()).toBe(0);
    expect(resumed.worker.doubleReleases).toEqual([]);
  }
  return whole;
}

import { firstValueFrom, lastValueFrom, toArray } from 'rxjs';
import * as grpc from '@grpc/grpc-js';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { JobState, Plan, Result, Round, SearchEvent, SearchRequest } from '../gen/noisesearch/search/v1/search';
import { SearchError } from '../search/errors';
import { WorkerCallError } from '../worker/worker-rpc';
import { JobRegistry, toJobError } from './job-registry';
import { SqlJobStore } from './sql-job-store';
import type { SearchRunContext, SearchRunner } from './search-runner';

const plan = (rounds: number): Plan => Plan.fromPartial({ algorithm: 'random', n: 2, rounds, searchNfes: '8' });
const result: Result = Result.fromPartial({ accounting: { searchNfes: '8' }, outputs: [{ rank: 0, png: Buffer.from('x') }] });

/** A runner whose runs advance only when the test says so. */
class FakeRunner implements SearchRunner {
  runs: { ctx: SearchRunContext; step: () => void; finish: (r?: Result) => void; fail: (e: unknown) => void }[] = [];
  plan(request: SearchRequest): Plan {
    if (request.random?.n === 0) throw new SearchError('INVALID_ARGUMENT', 'random.n must be >= 1', 'random.n');
    return plan(2);
  }
  run(_request: SearchRequest, ctx: SearchRunContext): Promise<Result> {
    return new Promise((resolve, reject) => {
      let round = 0;
      const entry = {
        ctx,
        step: () => ctx.events.onRound({ round: round++, nfesSpent: String(4 * round), sigma: 0, bestScores: [], kept: [], candidates: [], note: '', verifierCalls: '0', verifierSeconds: 0 }),
        finish: (r = result) => resolve(r),
        fail: (e: unknown) => reject(e),
      };
      ctx.signal.addEventListener('abort', () => reject(Object.assign(new Error('aborted'), { name: 'AbortError' })));
      this.runs.push(entry);
    });
  }
}

const req = (n = 2): SearchRequest => SearchRequest.fromPartial({ random: { n } });
const tick = () => new Promise((r) => setImmediate(r));

describe('JobRegistry', () => {
  let runner: FakeRunner;
  let reg: JobRegistry;
  beforeEach(() => {
    runner = new FakeRunner();
    reg = new JobRegistry(runner, { maxRunningJobs: 1, maxJobsKept: 3, cancelWaitMs: 1000 }, new SqlJobStore({ path: ':memory:' }));
  });

  it('submit validates, creates a RUNNING job with its plan, and completes with the result', async () => {
    expect(() => reg.submit(req(0))).toThrow(/random.n/);
    const job = reg.submit(req());
    expect(job.state).toBe(JobState.JOB_STATE_RUNNING);
    expect(job.plan?.rounds).toBe(2);
    runner.runs[0].step();
    expect(reg.get(job.id)).toMatchObject({ roundsDone: 1, nfesSpent: '4' });
    runner.runs[0].finish();
    await tick();
    const done = reg.get(job.id);
    expect(done.state).toBe(JobState.JOB_STATE_SUCCEEDED);
    expect(done.result?.outputs).toHaveLength(1);
    expect(done.finishedAt).not.toBe('');
  });

  it('search streams plan, rounds, result, each with the job id', async () => {
    const events$ = reg.search(req());
    const collected = lastValueFrom(events$.pipe(toArray()));
    await tick();
    runner.runs[0].step();
    runner.runs[0].step();
    runner.runs[0].finish();
    const events = await collected;
    expect(events.map(kind)).toEqual(['plan', 'round', 'round', 'result']);
    expect(new Set(events.map((e) => e.jobId)).size).toBe(1);
  });

  it('watch replays past events then follows', async () => {
    const job = reg.submit(req());
    runner.runs[0].step();
    const first = reg.watch(job.id).pipe(toArray());
    const p = lastValueFrom(first);
    runner.runs[0].step();
    runner.runs[0].finish();
    expect((await p).map(kind)).toEqual(['plan', 'round', 'round', 'result']);
    // after the end: pure replay
    expect((await lastValueFrom(reg.watch(job.id).pipe(toArray()))).map(kind)).toEqual(['plan', 'round', 'round', 'result']);
  });

  it('queues beyond the concurrency limit and starts the next when one finishes', async () => {
    const a = reg.submit(req());
    const b = reg.submit(req());
    expect(b.state).toBe(JobState.JOB_STATE_QUEUED);
    expect(reg.counts()).toEqual({ running: 1, queued: 1 });
    runner.runs[0].finish();
    await tick();
    expect(reg.get(a.id).state).toBe(JobState.JOB_STATE_SUCCEEDED);
    expect(reg.get(b.id).state).toBe(JobState.JOB_STATE_RUNNING);
    expect(runner.runs).toHaveLength(2);
  });

  it('cancel aborts the running job signal and ends CANCELLED; watchers get CANCELLED', async () => {
    const job = reg.submit(req());
    const watched = lastValueFrom(reg.watch(job.id).pipe(toArray()));
    const c = await reg.cancel(job.id);
    expect(runner.runs[0].ctx.signal.aborted).toBe(true);
    expect(c.state).toBe(JobState.JOB_STATE_CANCELLED);
    await expect(watched).rejects.toMatchObject({ code: 'CANCELLED' });
    // idempotent
    expect((await reg.cancel(job.id)).state).toBe(JobState.JOB_STATE_CANCELLED);
  });

  it('cancel of a queued job never starts it', async () => {
    reg.submit(req());
    const b = reg.submit(req());
    expect((await reg.cancel(b.id)).state).toBe(JobState.JOB_STATE_CANCELLED);
    runner.runs[0].finish();
    await tick();
    expect(runner.runs).toHaveLength(1);
  });

  it('unsubscribing from a search stream cancels its job', async () => {
    const sub = reg.search(req()).subscribe();
    await tick();
    const id = reg.list()[0].id;
    sub.unsubscribe();
    await tick();
    expect(reg.get(id).state).toBe(JobState.JOB_STATE_CANCELLED);
  });

  it('a failed run ends FAILED with its error', async () => {
    const job = reg.submit(req());
    runner.runs[0].fail(new WorkerCallError('denoise', grpc.status.RESOURCE_EXHAUSTED, 'memory cap', 'w:1'));
    await tick();
    const j = reg.get(job.id);
    expect(j.state).toBe(JobState.JOB_STATE_FAILED);
    expect(j.error).toMatch(/memory cap/);
    await expect(firstValueFrom(reg.watch(job.id).pipe(toArray()))).rejects.toMatchObject({ code: 'RESOURCE_EXHAUSTED' });
  });

  it('get / watch / cancel of an unknown id are NOT_FOUND', async () => {
    expect(() => reg.get('nope')).toThrow(expect.objectContaining({ code: 'NOT_FOUND' }));
    expect(() => reg.watch('nope')).toThrow(expect.objectContaining({ code: 'NOT_FOUND' }));
    await expect(reg.cancel('nope')).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('lists newest first, filters by state, honours the limit and forgets old finished jobs', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      ids.push(reg.submit(req()).id);
      runner.runs[i].finish();
      await tick();
    }
    const running = reg.submit(req());
    expect(reg.list(JobState.JOB_STATE_RUNNING).map((j) => j.id)).toEqual([running.id]);
    expect(reg.list(JobState.JOB_STATE_UNSPECIFIED, 2).map((j) => j.id)).toEqual([running.id, ids[4]]);
    // maxJobsKept = 3 finished
    expect(reg.list(JobState.JOB_STATE_SUCCEEDED).map((j) => j.id)).toEqual([ids[4], ids[3], ids[2]]);
    // List leaves results (images) to Get.
    expect(reg.list(JobState.JOB_STATE_SUCCEEDED)[0].result).toBeUndefined();
    expect(reg.get(ids[4]).result).toBeDefined();
  });

  it('close cancels everything and refuses new jobs', async () => {
    reg.submit(req());
    reg.submit(req());
    await reg.close();
    expect(reg.list().every((j) => j.state === JobState.JOB_STATE_CANCELLED)).toBe(true);
    expect(() => reg.submit(req())).toThrow(/shutting down/);
  });
});

describe('JobRegistry previews', () => {
  let dir: string;
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ns-previews-')); });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("a round's previews are in the store: served by a new registry on the same file after a restart", async () => {
    const file = path.join(dir, 'jobs.db');
    const runner = new FakeRunner();
    const store = new SqlJobStore({ path: file });
    const reg = new JobRegistry(runner, { maxRunningJobs: 1, maxJobsKept: 3 }, store);
    const job = reg.submit(req());
    const round = Round.fromPartial({ round: 1, kept: ['r1.c0'] });
    runner.runs[0].step();
    runner.runs[0].ctx.events.onPreviews!(round, [{ id: 'r1.c0', png: Buffer.from('png of r1.c0') }]);
    expect(reg.preview(job.id, 'r1.c0')).toEqual(Buffer.from('png of r1.c0'));
    runner.runs[0].finish();
    await tick();
    await reg.close();
    store.close();

    const again = new JobRegistry(new FakeRunner(), { maxRunningJobs: 1, maxJobsKept: 3 }, new SqlJobStore({ path: file }));
    expect(again.preview(job.id, 'r1.c0')).toEqual(Buffer.from('png of r1.c0'));
    expect(again.preview(job.id, 'r1.c1')).toBeUndefined();
    await again.close();
  });
});

describe('toJobError', () => {
  it('maps search errors, worker errors and aborts', () => {
    expect(toJobError(new SearchError('INVALID_ARGUMENT', 'x'))).toEqual({ code: 'INVALID_ARGUMENT', message: 'x' });
    expect(toJobError(new WorkerCallError('score', grpc.status.INVALID_ARGUMENT, 'bad', 'w')).code).toBe('INTERNAL');
    expect(toJobError(new WorkerCallError('score', grpc.status.UNAVAILABLE, 'down', 'w')).code).toBe('UNAVAILABLE');
    const ac = new AbortController();
    ac.abort();
    expect(toJobError(new Error('whatever'), ac.signal).code).toBe('CANCELLED');
    expect(toJobError(new Error('boom')).code).toBe('INTERNAL');
  });
});

function kind(e: SearchEvent): string {
  return e.plan ? 'plan' : e.round ? 'round' : e.result ? 'result' : '?';
}

// The registry over the SQLite store with the real search core on the fake worker: a process that
// dies mid-job (its registry simply stops, as after SIGKILL), a new process on the same database
// continuing the job, and a drain.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { lastValueFrom, toArray } from 'rxjs';
import { JobState, Round, type Plan, type Result, type SearchRequest } from '../gen/noisesearch/search/v1/search';
import { Solver } from '../gen/noisesearch/worker/v1/worker';
import { DEFAULT_LIMITS } from '../search/catalog';
import { planSearch, resolveRequest } from '../search/plan';
import { runSearch } from '../search/run-search';
import { FAKE_CATALOG, FakeWorker } from '../search/testing/fake-worker';
import { request } from '../search/testing/requests';
import type { WorkerPort } from '../search/worker-port';
import { JobRegistry } from './job-registry';
import type { SearchRunContext, SearchRunner } from './search-runner';
import { SqlJobStore, SqlJobStore as SqliteJobStore } from './sql-job-store';
import { BullJobQueue } from './job-queue';
import { startPgCluster, type PgCluster } from './testing/pg-cluster';
import { startRedis, type RedisServer } from './testing/redis-server';

const euler = (steps: number) => ({ solver: Solver.SOLVER_EULER, steps, guidanceScale: 1 });

/** The core on a fresh fake worker per run; `stall(round)` makes the worker stop answering after that round. */
class FakeCoreRunner implements SearchRunner {
  runs: SearchRunContext[] = [];
  /** While set, a stalled worker call waits for it instead of forever (a paused process resumed). */
  gate?: Promise<void>;
  constructor(private readonly stallAfterRound?: number, private readonly delayMs = 0) {}
  plan(req: SearchRequest): Plan {
    return planSearch(resolveRequest(req, FAKE_CATALOG, DEFAULT_LIMITS), FAKE_CATALOG, DEFAULT_LIMITS);
  }
  run(req: SearchRequest, ctx: SearchRunContext): Promise<Result> {
    this.runs.push(ctx);
    const worker = new FakeWorker({ condition: req.condition });
    let stalled = false;
    const port = new Proxy(worker, {
      get: (t, p, r) => {
        const v = Reflect.get(t, p, r);
        if (typeof v !== 'function') return v;
        return async (...a: unknown[]) => {
          if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs)); // a worker that takes time
          if (stalled) await (this.gate ?? new Promise(() => undefined));
          return v.apply(t, a);
        };
      },
    }) as WorkerPort;
    const events = {
      onRound: (round: Parameters<SearchRunContext['events']['onRound']>[0], cp?: Parameters<SearchRunContext['events']['onRound']>[1]) => {
        ctx.events.onRound(round, cp);
        if (this.stallAfterRound !== undefined && round.round >= this.stallAfterRound) stalled = true;
      },
    };
    return runSearch(port, req, FAKE_CATALOG, DEFAULT_LIMITS, events, ctx.signal, { resume: ctx.resume });
  }
}

const until = async (cond: () => boolean, ms = 5_000) => {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
};

let dir: string;
beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ns-resume-')); });
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const REQ = request({
  zeroOrder: { n: 3, k: 6, acceptNonImproving: false, tau: 0.9, maxRejections: 2 }, searchSolver: euler(4), finalSolver: euler(6),
  numOutputs: 2, return: { png: true, rawTensor: false, candidateScores: true, pngUpscale: 1 },
});
const options = { maxRunningJobs: 2, maxJobsKept: 100, cancelWaitMs: 2_000 };

async function uninterrupted(req: SearchRequest): Promise<Result> {
  const reg = new JobRegistry(new FakeCoreRunner(), options, new SqliteJobStore({ path: ':memory:' }));
  const job = reg.submit(req);
  await lastValueFrom(reg.watch(job.id).pipe(toArray()));
  return reg.get(job.id).result!;
}

function sameResult(a: Result, b: Result): void {
  const strip = (r: Result) => ({ ...r, wallSeconds: 0, accounting: { ...r.accounting!, workerCalls: '', recoveryNfes: '', totalNfes: '' } });
  expect(strip(a)).toEqual(strip(b));
  for (let i = 0; i < a.outputs.length; i++) expect(Buffer.compare(a.outputs[i].png, b.outputs[i].png)).toBe(0);
}

describe('jobs survive the process', () => {
  it('a job whose process died after round 2 continues in a new process from round 3, with the uninterrupted result', async () => {
    const file = path.join(dir, 'ns.db');
    const first = new JobRegistry(new FakeCoreRunner(2), options, new SqliteJobStore({ path: file }));
    const job = first.submit(REQ);
    await until(() => first.get(job.id).roundsDone === 2);
    // "SIGKILL": the first process does nothing more; its database is what it committed.
    const secondStore = new SqliteJobStore({ path: file });
    expect(secondStore.get(job.id)).toMatchObject({ state: JobState.JOB_STATE_RUNNING, roundsDone: 2 });
    const runner = new FakeCoreRunner();
    const second = new JobRegistry(runner, options, secondStore);
    const resumedRecovery = secondStore.checkpoint(job.id)!.ledger.recoveryNfes;
    expect(second.resumeUnfinished()).toEqual([job.id]);
    expect(runner.runs[0].resume?.checkpoint.round).toBe(2);
    expect(runner.runs[0].resume?.rounds.map((r) => r.round)).toEqual([1, 2]);
    const events = await lastValueFrom(second.watch(job.id).pipe(toArray()));
    expect(events.map((e) => (e.plan ? 'plan' : e.round ? `r${e.round.round}` : 'result'))).toEqual(['plan', 'r1', 'r2', 'r3', 'r4', 'r5', 'r6', 'result']);
    const done = second.get(job.id);
    expect(done.state).toBe(JobState.JOB_STATE_SUCCEEDED);
    expect(done.roundsDone).toBe(6);
    sameResult(done.result!, await uninterrupted(REQ));
    expect(done.result!.accounting!.searchNfes).toBe(done.plan!.searchNfes);
    // Round 3 was in flight when the first process died: its NFEs were spent twice, the second time
    // charged as recovery (besides whatever rebuilding the resumed state cost).
    const nfes = events.filter((e) => e.round).map((e) => Number(e.round!.nfesSpent));
    const a = done.result!.accounting!;
    expect(Number(a.recoveryNfes)).toBe(nfes[2] - nfes[1] + Number(resumedRecovery));
    expect(Number(a.totalNfes)).toBe(Number(a.searchNfes) + Number(a.finalNfes) + Number(a.recoveryNfes));
    secondStore.close();
  });

  it('drain: the running job stops after committing its round and stays RUNNING, the queued one stays QUEUED; both finish after a restart', async () => {
    const file = path.join(dir, 'drain.db');
    const store = new SqliteJobStore({ path: file });
    const reg = new JobRegistry(new FakeCoreRunner(undefined, 20), { ...options, maxRunningJobs: 1 }, store);
    const a = reg.submit(REQ);
    const b = reg.submit({ ...REQ, seed: '99' });
    const watched = lastValueFrom(reg.watch(a.id).pipe(toArray())).catch((e) => e);
    await until(() => reg.get(a.id).roundsDone >= 1);
    const drained = await reg.drain(5_000);
    expect(drained).toEqual({ finished: 0, left: 1 });
    const ja = reg.get(a.id);
    expect(ja.state).toBe(JobState.JOB_STATE_RUNNING);
    expect(ja.roundsDone).toBeGreaterThanOrEqual(1);
    expect(ja.roundsDone).toBeLessThan(6);
    expect(store.checkpoint(a.id)!.rounds).toBe(ja.roundsDone);
    expect(reg.get(b.id).state).toBe(JobState.JOB_STATE_QUEUED);
    expect(await watched).toMatchObject({ code: 'UNAVAILABLE' });
    // Watching a job left for the restart says so, too.
    await expect(lastValueFrom(reg.watch(b.id).pipe(toArray()))).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    expect(() => reg.submit(REQ)).toThrow(/shutting down/);
    store.close();

    const again = new SqliteJobStore({ path: file });
    const reg2 = new JobRegistry(new FakeCoreRunner(), { ...options, maxRunningJobs: 1 }, again);
    expect(reg2.resumeUnfinished()).toEqual([a.id, b.id]);
    await lastValueFrom(reg2.watch(a.id).pipe(toArray()));
    await lastValueFrom(reg2.watch(b.id).pipe(toArray()));
    sameResult(reg2.get(a.id).result!, await uninterrupted(REQ));
    sameResult(reg2.get(b.id).result!, await uninterrupted({ ...REQ, seed: '99' }));
    // A drain stops after a committed round: nothing was in flight, nothing is charged again.
    expect(again.inFlight(a.id)).toEqual({ afterRound: null, lostNfes: 0 });
    again.close();
  });
});

describe('replicas sharing PostgreSQL, jobs dispatched by BullMQ on Redis (fencing tokens in the store)', () => {
  let pg: PgCluster;
  let redis: RedisServer;
  beforeAll(async () => { [pg, redis] = await Promise.all([startPgCluster(), startRedis()]); }, 60_000);
  afterAll(() => { pg?.stop(); redis?.stop(); });
  /** A replica: its own store connection and its own BullMQ worker on the test's queue. */
  const replica = (owner: string, runner: SearchRunner, url: string, queueName: string, o: { maxRunningJobs?: number; cancelWaitMs?: number; lockMs?: number } = {}) => {
    const maxRunningJobs = o.maxRunningJobs ?? options.maxRunningJobs;
    const queue = new BullJobQueue({ url: redis.url, name: queueName, concurrency: maxRunningJobs, lockMs: o.lockMs ?? 2_000, log: process.env.DEBUG_REPLICAS ? (m: string) => console.log(owner, m) : undefined });
    const store = new SqlJobStore({ path: url });
    const registry = new JobRegistry(runner, {
      ...options, maxRunningJobs, cancelWaitMs: o.cancelWaitMs ?? options.cancelWaitMs, shared: { owner, queue, checkMs: 50, watchPollMs: 20 }, log: process.env.DEBUG_REPLICAS ? (m: string) => console.log(owner, m) : undefined,
    }, store);
    return { registry, store, queue };
  };

  it('jobs submitted to either replica run once; a replica paused past its lock commits nothing; Watch and Cancel from the other', async () => {
    const url = pg.createDatabase('replicas');
    const runnerA = new FakeCoreRunner(2, 5);
    let wake!: () => void;
    runnerA.gate = new Promise<void>((r) => { wake = r; });
    const a = replica('A', runnerA, url, 'replicas', { maxRunningJobs: 1 });
    // B's Cancel of a job running elsewhere waits for the holder to see it (within its check interval, plus its round).
    const b = replica('B', new FakeCoreRunner(undefined, 5), url, 'replicas', { maxRunningJobs: 2, cancelWaitMs: 15_000 });
    const [A, B] = [a.registry, b.registry];
    A.resumeUnfinished();
    const job = A.submit(REQ); // only A takes jobs from the queue yet
    await until(() => A.get(job.id).roundsDone === 2);
    const tokenA = a.store.leaseOf(job.id)!;
    expect(tokenA.owner).toBe('A');
    // Previews commit under the lease, like rounds: the holder's are stored.
    const previews = runnerA.runs[0].events.onPreviews!;
    previews(Round.fromPartial({ round: 2 }), [{ id: 'r2.c0', png: Buffer.from('while A held the lease') }]);
    expect(b.store.preview(job.id, 'r2.c0')).toEqual(Buffer.from('while A held the lease'));
    // A is "paused" (SIGSTOP): its worker call hangs and nothing renews its lock in the queue any more
    // (its BullMQ worker is closed without waiting); B starts and gets the job once the lock expired.
    await (a.queue as unknown as { worker: { close(force: boolean): Promise<void> } }).worker.close(true);
    B.resumeUnfinished();
    const other = B.submit({ ...REQ, seed: '99' });
    // Watch from A (the replica that does not run it now) follows it through the store.
    const watched = lastValueFrom(A.watch(job.id).pipe(toArray()));
    await until(() => B.get(job.id).state === JobState.JOB_STATE_SUCCEEDED, 20_000);
    const tokenB = b.store.leaseOf(job.id)!;
    expect(tokenB.owner).toBe('B');
    expect(tokenB.token).toBeGreaterThan(tokenA.token);
    // A, still paused, has previews to save: refused, B's job has none of them.
    previews(Round.fromPartial({ round: 3 }), [{ id: 'r3.c0', png: Buffer.from('after A lost the lease') }]);
    expect(b.store.preview(job.id, 'r3.c0')).toBeUndefined();
    // A wakes: its round 3 returns, its commit is refused (token 1 is fenced off), it drops the job.
    wake();
    await until(() => runnerA.runs[runnerA.runs.length - 1].signal.aborted, 5_000);
    const events = await watched;
    expect(events.filter((e) => e.round).map((e) => e.round!.round)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(events.filter((e) => e.result)).toHaveLength(1);
    const done = B.get(job.id);
    sameResult(done.result!, await uninterrupted(REQ));
    // A died (to the store) with round 3 in flight: charged as recovery.
    expect(Number(done.result!.accounting!.recoveryNfes)).toBeGreaterThan(0);
    await lastValueFrom(A.watch(other.id).pipe(toArray()));
    sameResult(A.get(other.id).result!, await uninterrupted({ ...REQ, seed: '99' }));

    // Cancel from a replica that does not run the job (A takes nothing from the queue any more).
    const c = replica('C', new FakeCoreRunner(undefined, 200), url, 'replicas', { lockMs: 5_000 });
    c.registry.resumeUnfinished();
    const running = c.registry.submit({ ...REQ, seed: '5' });
    await until(() => A.get(running.id).roundsDone >= 1, 10_000);
    expect((await A.cancel(running.id)).state).toBe(JobState.JOB_STATE_CANCELLED);
    expect(A.get(running.id).roundsDone).toBeLessThan(6);
    // A job waiting in the queue (no replica takes jobs now) is taken out of it and cancelled where asked.
    await c.registry.close();
    await B.close();
    const waiting = A.submit({ ...REQ, seed: '6' });
    expect(A.get(waiting.id).state).toBe(JobState.JOB_STATE_QUEUED);
    expect((await A.cancel(waiting.id)).state).toBe(JobState.JOB_STATE_CANCELLED);
    await A.close();
    for (const r of [a, b, c]) r.store.close();
  }, 60_000);

  it('SIGTERM on a replica: its job stops after a committed round and goes back to the queue; the other continues it at once', async () => {
    const url = pg.createDatabase('drain');
    // A long lock: B could only get the job this soon because A gave it back.
    const a = replica('A', new FakeCoreRunner(undefined, 20), url, 'drain', { lockMs: 60_000 });
    a.registry.resumeUnfinished();
    const job = a.registry.submit(REQ);
    await until(() => a.registry.get(job.id).roundsDone >= 1);
    expect(await a.registry.drain(5_000)).toEqual({ finished: 0, left: 1 });
    const b = replica('B', new FakeCoreRunner(), url, 'drain', { lockMs: 60_000 });
    const left = b.store.get(job.id)!;
    expect(left.state).toBe(JobState.JOB_STATE_RUNNING);
    expect(b.store.inFlight(job.id).afterRound).toBeNull(); // stopped cleanly: nothing to charge again
    const t0 = Date.now();
    expect(b.registry.resumeUnfinished()).toEqual([job.id]);
    const events = await lastValueFrom(b.registry.watch(job.id).pipe(toArray()));
    expect(Date.now() - t0).toBeLessThan(30_000); // not after the lock's 60 s
    expect(events.filter((e) => e.round).map((e) => e.round!.round)).toEqual([1, 2, 3, 4, 5, 6]);
    const done = b.registry.get(job.id);
    sameResult(done.result!, await uninterrupted(REQ));
    expect(b.store.inFlight(job.id).lostNfes).toBe(0);
    expect(b.store.leaseOf(job.id)!.owner).toBe('B');
    await b.registry.close();
    a.store.close();
    b.store.close();
  }, 30_000);
});

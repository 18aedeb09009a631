// Scale-out with real servers on loopback: a throwaway PostgreSQL cluster and Redis server, 2 Python
// workers, and orchestrator replicas as separate processes (node, as `npm start` runs them) sharing the
// database (jobs, fencing tokens) and the BullMQ queue on Redis (dispatch, leases as BullMQ's locks).
// 40 searches submitted across both replicas; kill -9 of one replica and of one worker mid-run;
// every job finishes exactly once with the bytes of a solo run and its plan's account (recovery NFEs
// apart); a replica paused (SIGSTOP) past its lease and resumed commits nothing; a job submitted to
// replica A is visible, watchable and cancellable from replica B.
import { ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { Client } from 'pg';
import { Job, JobState, Result, SearchRequest } from '../src/gen/noisesearch/search/v1/search';
import { Solver } from '../src/gen/noisesearch/worker/v1/worker';
import { api, searchClient } from '../src/cli/client';
import { startPgCluster, type PgCluster } from '../src/jobs/testing/pg-cluster';
import { startRedis, type RedisServer } from '../src/jobs/testing/redis-server';
import { LocalWorker, repoRoot } from '../src/worker/local-worker';

jest.setTimeout(600_000);

const ROOT = path.resolve(__dirname, '..');
const TOKEN = randomBytes(24).toString('hex');
const WORKER_TOKEN = randomBytes(24).toString('hex');
const LEASE_MS = 3_000;
const euler = (steps: number) => ({ solver: Solver.SOLVER_EULER, steps, guidanceScale: 1 });
const png = { png: true, rawTensor: false, candidateScores: false, pngUpscale: 1 };

// The 40 small searches: random n=2, Euler 2 steps (search and final), the default model.
const REQUESTS = Array.from({ length: 40 }, (_, i) => SearchRequest.fromPartial({
  condition: { classLabel: i % 10 }, random: { n: 2 }, searchSolver: euler(2), finalSolver: euler(2), seed: String(1000 + i), return: png,
}));
// Longer ones (several rounds) for Watch/Cancel from another replica and for the pause.
const LONG = (seed: string) => SearchRequest.fromPartial({
  condition: { classLabel: 3 }, zeroOrder: { n: 4, k: 8 }, searchSolver: euler(16), finalSolver: euler(4), seed, return: png,
});

interface Replica {
  name: string;
  proc: ChildProcess;
  lines: string[];
  client: ReturnType<typeof api>;
  exited: Promise<unknown>;
  close(): void;
}

let pg: PgCluster;
let redis: RedisServer;
let dbUrl: string;
const workers: LocalWorker[] = [];
const addresses: string[] = [];
const replicas: Replica[] = [];
const figures: Record<string, unknown> = {};

async function startReplica(name: string): Promise<Replica> {
  const proc = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', 'src/main.ts'], {
    cwd: ROOT,
    env: {
      ...process.env,
      NOISESEARCH_GRPC_ADDRESS: '127.0.0.1:0',
      NOISESEARCH_HTTP_PORT: '0',
      NOISESEARCH_DB: dbUrl,
      NOISESEARCH_QUEUE: redis.url,
      NOISESEARCH_TOKENS: `${TOKEN}:admin`,
      NOISESEARCH_WORKER_ADDRESSES: addresses.join(','),
      NOISESEARCH_WORKER_TOKEN: WORKER_TOKEN,
      NOISESEARCH_MAX_RUNNING_JOBS: '4',
      NOISESEARCH_LEASE_MS: String(LEASE_MS),
      NOISESEARCH_LOG_LEVEL: 'log',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => {
    lines.push(`[test] replica ${name} exited: code ${code}, signal ${signal}`);
    resolve(code);
  }));
  const address = await new Promise<string>((resolve, reject) => {
    const onLine = (line: string) => {
      lines.push(line);
      const ready = /noisesearch orchestrator: gRPC on (\S+)/.exec(line);
      if (ready) resolve(ready[1].replace(/,$/, ''));
    };
    readline.createInterface({ input: proc.stdout! }).on('line', onLine);
    readline.createInterface({ input: proc.stderr! }).on('line', onLine);
    exited.then(() => reject(new Error(`replica ${name} exited before ready:\n${lines.slice(-30).join('\n')}`)));
  });
  const raw = searchClient(address, { token: TOKEN });
  const r = { name, proc, lines, client: api(raw), exited, close: () => raw.close() };
  replicas.push(r);
  return r;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const finished = (j: Job) => [JobState.JOB_STATE_SUCCEEDED, JobState.JOB_STATE_FAILED, JobState.JOB_STATE_CANCELLED].includes(j.state);

async function waitFor(r: Replica, id: string, done: (j: Job) => boolean, ms = 240_000): Promise<Job> {
  const t0 = Date.now();
  for (;;) {
    const j = await r.client.get(id);
    if (done(j)) return j;
    if (Date.now() - t0 > ms) throw new Error(`job ${id}: still ${JobState[j.state]} after ${ms} ms (rounds ${j.roundsDone})`);
    await sleep(100);
  }
}

/** Rows of the shared database (what every replica sees). */
async function query<T>(sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new Client(dbUrl);
  await c.connect();
  try {
    return (await c.query(sql, params)).rows as T[];
  } finally {
    await c.end();
  }
}

function expectSolo(got: Result, solo: Result): void {
  expect(got.outputs.length).toBe(solo.outputs.length);
  for (let i = 0; i < solo.outputs.length; i++) {
    expect(got.outputs[i].png.length).toBeGreaterThan(0);
    expect(Buffer.compare(got.outputs[i].png, solo.outputs[i].png)).toBe(0);
    expect(got.outputs[i].recipe).toEqual(solo.outputs[i].recipe);
  }
  const a = got.accounting!;
  expect(a.searchNfes).toBe(got.plan!.searchNfes);
  expect(a.finalNfes).toBe(solo.accounting!.finalNfes);
  expect(BigInt(a.totalNfes)).toBe(BigInt(a.searchNfes) + BigInt(a.finalNfes) + BigInt(a.recoveryNfes));
}

/** Each job committed once: one result event, each round once, in order. */
async function expectOnce(ids: string[]): Promise<void> {
  const rows = await query<{ job_id: string; kind: string; round: number | null }>(
    'SELECT job_id, kind, round FROM job_events WHERE job_id = ANY($1) ORDER BY job_id, seq', [ids]);
  for (const id of ids) {
    const mine = rows.filter((r) => r.job_id === id);
    expect([id, mine.filter((r) => r.kind === 'result').length]).toEqual([id, 1]);
    const rounds = mine.filter((r) => r.kind === 'round').map((r) => r.round);
    expect(rounds).toEqual(rounds.map((_, i) => i + 1));
  }
}

beforeAll(async () => {
  const t0 = Date.now();
  [pg, redis] = await Promise.all([startPgCluster(), startRedis()]);
  dbUrl = pg.createDatabase('noisesearch');
  process.env.NOISESEARCH_WORKER_TOKEN = WORKER_TOKEN;
  for (let i = 0; i < 2; i++) {
    const w = new LocalWorker({ python: process.env.NOISESEARCH_PYTHON || 'python-worker/.venv/bin/python', cwd: repoRoot(), startTimeoutMs: 180_000 });
    workers.push(w);
  }
  addresses.push(...(await Promise.all(workers.map((w) => w.start()))));
  await Promise.all([startReplica('A'), startReplica('B')]);
  replicas.sort((a, b) => a.name.localeCompare(b.name)); // [A, B], whichever was ready first
  figures.startS = (Date.now() - t0) / 1000;
});

afterAll(async () => {
  for (const r of replicas) {
    const warnings = r.lines.filter((l) => /WARN|ERROR|lost its lease|failed|died/.test(l));
    if (warnings.length > 0) process.stdout.write(`replica ${r.name}:\n${warnings.slice(-40).join('\n')}\n`);
    // A replica that ended without the test killing it: everything it said last, unfiltered.
    const exit = r.lines.find((l) => l.startsWith(`[test] replica ${r.name} exited`));
    if (exit && !(r.name === 'B' && figures.killedReplica === 'B')) process.stdout.write(`replica ${r.name} (unexpected exit):\n${r.lines.slice(-60).join('\n')}\n`);
    r.close();
    if (r.proc.exitCode === null && r.proc.signalCode === null) {
      r.proc.kill('SIGCONT');
      r.proc.kill('SIGKILL');
      await r.exited;
    }
  }
  await Promise.all(workers.map((w) => w.stop(2_000).catch(() => undefined)));
  pg?.stop();
  redis?.stop();
  figures.loadAverage = os.loadavg().map((l) => Number(l.toFixed(2)));
  process.stdout.write(`multi-replica e2e figures: ${JSON.stringify(figures)}\n`);
});

const solo: Result[] = [];
let longSolo: Result;

describe('several orchestrator replicas on PostgreSQL and BullMQ on Redis, two workers (real processes)', () => {
  it('solo runs: the reference results (replica A, no faults)', async () => {
    const t0 = Date.now();
    const [A] = replicas;
    const jobs = await Promise.all(REQUESTS.map((r) => A.client.submit(r)));
    for (const j of jobs) {
      const done = await waitFor(A, j.id, finished);
      expect([done.id, JobState[done.state], done.error]).toEqual([done.id, 'JOB_STATE_SUCCEEDED', '']);
      solo.push(done.result!);
    }
    expect(solo.every((r) => r.outputs[0].png.length > 0)).toBe(true);
    longSolo = (await waitFor(A, (await A.client.submit(LONG('7'))).id, finished)).result!;
    figures.soloS = (Date.now() - t0) / 1000;
  });

  it('a job submitted to replica A is visible, watchable and cancellable from replica B', async () => {
    const [A, B] = replicas;
    const job = await A.client.submit(LONG('7'));
    expect((await B.client.get(job.id)).plan!.searchNfes).toBe(job.plan!.searchNfes);
    expect((await B.client.list()).jobs.map((j) => j.id)).toContain(job.id);
    const events = await B.client.watch(job.id);
    expect(events.filter((e) => e.round).map((e) => e.round!.round)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expectSolo(events[events.length - 1].result!, longSolo);
    const other = await A.client.submit(LONG('8'));
    await waitFor(B, other.id, (j) => j.roundsDone >= 1 || finished(j));
    const cancelled = await B.client.cancel(other.id);
    expect(cancelled.state).toBe(JobState.JOB_STATE_CANCELLED);
    expect((await A.client.get(other.id)).state).toBe(JobState.JOB_STATE_CANCELLED);
  });

  it('40 searches across both replicas; kill -9 of replica B and of a worker mid-run: each finishes once, solo bytes, plan + recovery', async () => {
    const [A, B] = replicas;
    const t0 = Date.now();
    const jobs = await Promise.all(REQUESTS.map((r, i) => (i % 2 === 0 ? A : B).client.submit({ ...r, clientId: 'fault-run' })));
    // Mid-run: some finished, some running (on both replicas), some queued.
    for (;;) {
      const rows = await query<{ n: string }>('SELECT COUNT(*) AS n FROM jobs WHERE client_id = $1 AND state = $2', ['fault-run', JobState.JOB_STATE_SUCCEEDED]);
      if (Number(rows[0].n) >= 6) break;
      await sleep(20);
    }
    const held = await query<{ lease_owner: string }>('SELECT lease_owner FROM jobs WHERE client_id = $1 AND state = $2', ['fault-run', JobState.JOB_STATE_RUNNING]);
    figures.runningAtKill = held.length;
    figures.runningOnKilledReplica = held.filter((h) => h.lease_owner?.includes(`/${B.proc.pid}/`)).length;
    B.proc.kill('SIGKILL');
    await B.exited;
    workers[1].killNow();
    figures.killedReplica = 'B';
    figures.killedWorker = addresses[1];
    const done = await Promise.all(jobs.map((j) => waitFor(A, j.id, finished)));
    figures.faultRunS = (Date.now() - t0) / 1000;
    for (let i = 0; i < done.length; i++) {
      expect([done[i].id, JobState[done[i].state], done[i].error]).toEqual([done[i].id, 'JOB_STATE_SUCCEEDED', '']);
      expectSolo(done[i].result!, solo[i]);
    }
    await expectOnce(done.map((j) => j.id));
    const recovery = done.map((j) => Number(j.result!.accounting!.recoveryNfes));
    figures.jobs = done.length;
    figures.recoveryNfes = recovery.reduce((a, b) => a + b, 0);
    figures.jobsWithRecovery = recovery.filter((r) => r > 0).length;
    figures.plannedNfes = done.reduce((a, j) => a + Number(j.plan!.totalNfes), 0);
    // The surviving replica saw the worker go: a search it held there failed over, or (when none of its
    // searches was on that worker at the kill) its health probe marked the worker not serving.
    expect(A.lines.join('\n')).toMatch(/worker .* failed|moved to|worker \S+ not serving/);
  });

  it('a replica paused (SIGSTOP) past its lease and resumed commits nothing; another replica finishes its job', async () => {
    const [A] = replicas;
    const C = await startReplica('C');
    // Submitted to C; the queue gives it to A or C (both have free slots): the one running it is paused.
    const job = await C.client.submit(LONG('7'));
    await waitFor(C, job.id, (j) => j.roundsDone >= 2 || finished(j));
    const [{ lease_owner: owner, lease_token: token }] = await query<{ lease_owner: string; lease_token: string }>('SELECT lease_owner, lease_token FROM jobs WHERE id = $1', [job.id]);
    const paused = [A, C].find((r) => owner.includes(`/${r.proc.pid}/`))!;
    expect(paused).toBeDefined();
    const other = paused === A ? C : A;
    figures.pausedReplica = paused.name;
    paused.proc.kill('SIGSTOP');
    const pausedAt = Date.now();
    const done = await waitFor(other, job.id, finished);
    figures.pauseTakeoverS = (Date.now() - pausedAt) / 1000;
    const before = await query<{ n: string }>('SELECT COUNT(*) AS n FROM job_events WHERE job_id = $1', [job.id]);
    const [after1] = await query<{ lease_owner: string; lease_token: string }>('SELECT lease_owner, lease_token FROM jobs WHERE id = $1', [job.id]);
    expect(after1.lease_owner).toMatch(new RegExp(`/${other.proc.pid}/`));
    expect(Number(after1.lease_token)).toBeGreaterThan(Number(token));
    paused.proc.kill('SIGCONT');
    // Until the resumed replica has noticed (its BullMQ lock renewal fails, its token check or its next commit is refused).
    const t0 = Date.now();
    while (!paused.lines.join('\n').includes(`job ${job.id}: lost its lease`) && Date.now() - t0 < 60_000) await sleep(100);
    await sleep(LEASE_MS);
    const after = await query<{ n: string }>('SELECT COUNT(*) AS n FROM job_events WHERE job_id = $1', [job.id]);
    expect(after[0].n).toBe(before[0].n);
    expect(done.state).toBe(JobState.JOB_STATE_SUCCEEDED);
    expectSolo(done.result!, longSolo);
    await expectOnce([job.id]);
    expect(paused.lines.join('\n')).toMatch(new RegExp(`job ${job.id}: lost its lease`));
    expect(Number(done.result!.accounting!.recoveryNfes)).toBeGreaterThan(0);
    figures.pausedJobRecoveryNfes = Number(done.result!.accounting!.recoveryNfes);
  });
});

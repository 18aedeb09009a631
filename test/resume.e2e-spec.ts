// Faults with real processes on loopback: the orchestrator (node, as `npm start` runs it) and the
// Python worker it spawns. SIGKILL of the orchestrator after round 2, SIGKILL of the worker mid-job,
// SIGTERM (drain) mid-job; every interrupted job must finish with the bytes, recipes and search
// account of an uninterrupted run of the same request.
import Database from 'better-sqlite3';
import { ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { FkPotential, Job, JobState, Result, SearchRequest } from '../src/gen/noisesearch/search/v1/search';
import { Solver } from '../src/gen/noisesearch/worker/v1/worker';
import { api, searchClient } from '../src/cli/client';

jest.setTimeout(300_000);

const ROOT = path.resolve(__dirname, '..');
const TOKEN = randomBytes(24).toString('hex');
const euler = (steps: number) => ({ solver: Solver.SOLVER_EULER, steps, guidanceScale: 1 });

// ZO-4, 6 rounds of 4 neighbours, Euler 20 steps (80 NFEs a round), the final re-solved with Euler 10.
const REQUEST = SearchRequest.fromPartial({
  model: 'sit-fmnist',
  condition: { classLabel: 7 },
  zeroOrder: { n: 4, k: 6, acceptNonImproving: false },
  searchSolver: euler(20),
  finalSolver: euler(10),
  seed: '20250109',
  numOutputs: 2,
  return: { png: true, rawTensor: false, candidateScores: true, pngUpscale: 1 },
});

// Paths-2 (M = 2, 19 rounds): its resumed state is partially denoised samples, rebuilt by replaying
// their forward-noise / solve chains, so a restart re-spends NFEs (reported as recovery).
const PATHS = SearchRequest.fromPartial({
  model: 'sit-fmnist',
  condition: { classLabel: 1 },
  paths: { n: 2, m: 2, backwardSteps: 0 },
  searchSolver: euler(40),
  seed: '77',
  return: { png: true, rawTensor: false, candidateScores: true, pngUpscale: 1 },
});

// The algorithms beyond the paper, each with several rounds (successive halving: 4, one per rung plus
// the last; Feynman-Kac: 6 resampling levels; rollover: one round per step), Euler 12 steps.
const BEYOND: Record<string, SearchRequest> = Object.fromEntries(Object.entries({
  successive_halving: { successiveHalving: { n: 8, rungs: [0.8, 0.6, 0.4], reduction: 2, freeLookahead: false } },
  feynman_kac: { feynmanKac: { k: 4, potential: FkPotential.FK_POTENTIAL_MAX, resampleEvery: 2 } },
  rollover_budget: { rolloverBudget: { nfes: '60', proposalsPerCall: 3 }, budgetNfes: '60' },
}).map(([name, algorithm]) => [name, SearchRequest.fromPartial({
  model: 'sit-fmnist',
  condition: { classLabel: 4 },
  searchSolver: euler(12),
  seed: '31337',
  return: { png: true, rawTensor: false, candidateScores: true, pngUpscale: 1 },
  ...algorithm,
})]));

interface Orch {
  proc: ChildProcess;
  address: string;
  lines: string[];
  /** Pids of the local worker, in spawn order (respawns append). */
  workerPids: number[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  client: ReturnType<typeof api>;
  close(): void;
}

const starts: number[] = [];
const figures: Record<string, unknown> = { orchestratorStartS: starts };
let dir: string;
let db: string;

async function startOrchestrator(): Promise<Orch> {
  const t0 = Date.now();
  const proc = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', 'src/main.ts'], {
    cwd: ROOT,
    env: {
      ...process.env,
      NOISESEARCH_GRPC_ADDRESS: '127.0.0.1:0',
      NOISESEARCH_HTTP_PORT: '0',
      NOISESEARCH_DB: db,
      NOISESEARCH_TOKENS: `${TOKEN}:admin`,
      NOISESEARCH_MAX_RUNNING_JOBS: '2',
      NOISESEARCH_LOG_LEVEL: 'log',
      NOISESEARCH_DRAIN_TIMEOUT_MS: '60000',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const workerPids: number[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('exit', (code, signal) => resolve({ code, signal })));
  const address = await new Promise<string>((resolve, reject) => {
    const onLine = (line: string) => {
      lines.push(line);
      const pid = /local worker pid (\d+) serving/.exec(line);
      if (pid) workerPids.push(Number(pid[1]));
      const ready = /noisesearch orchestrator: gRPC on (\S+)/.exec(line);
      if (ready) resolve(ready[1].replace(/,$/, ''));
    };
    readline.createInterface({ input: proc.stdout! }).on('line', onLine);
    readline.createInterface({ input: proc.stderr! }).on('line', onLine);
    exited.then(({ code, signal }) => reject(new Error(`orchestrator exited (${code}, ${signal}) before ready:\n${lines.slice(-30).join('\n')}`)));
  });
  const raw = searchClient(address, { token: TOKEN });
  starts.push((Date.now() - t0) / 1000);
  return { proc, address, lines, workerPids, exited, client: api(raw), close: () => raw.close() };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(orch: Orch, id: string, done: (j: Job) => boolean, ms = 180_000): Promise<Job> {
  const t0 = Date.now();
  for (;;) {
    const j = await orch.client.get(id);
    if (done(j)) return j;
    if (Date.now() - t0 > ms) throw new Error(`job ${id}: still ${JobState[j.state]} after ${ms} ms (rounds ${j.roundsDone})`);
    await sleep(50);
  }
}

const finished = (j: Job) => j.state === JobState.JOB_STATE_SUCCEEDED || j.state === JobState.JOB_STATE_FAILED || j.state === JobState.JOB_STATE_CANCELLED;

/** Running (a zombie nobody reaped yet counts as gone). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** The job as the database holds it (read-only, beside the running or dead orchestrator). */
function fromDb(id: string): { state: number; rounds_done: number; checkpoint_round: number | null } {
  const d = new Database(db, { readonly: true });
  try {
    return d.prepare(`SELECT j.state, j.rounds_done, c.round AS checkpoint_round FROM jobs j
      LEFT JOIN job_checkpoints c ON c.job_id = j.id WHERE j.id = ?`).get(id) as { state: number; rounds_done: number; checkpoint_round: number | null };
  } finally {
    d.close();
  }
}

function expectSameResult(got: Result, want: Result): void {
  expect(got.outputs.length).toBe(want.outputs.length);
  for (let i = 0; i < want.outputs.length; i++) {
    expect(got.outputs[i].png.length).toBeGreaterThan(0);
    expect(Buffer.compare(got.outputs[i].png, want.outputs[i].png)).toBe(0);
    expect(got.outputs[i].recipe).toEqual(want.outputs[i].recipe);
    expect(got.outputs[i].searchRecipe).toEqual(want.outputs[i].searchRecipe);
    expect(got.outputs[i].scores).toEqual(want.outputs[i].scores);
    expect(got.outputs[i].candidateId).toBe(want.outputs[i].candidateId);
  }
  expect(got.candidates).toEqual(want.candidates);
  const a = got.accounting!;
  const b = want.accounting!;
  for (const k of ['searchNfes', 'finalNfes', 'plannedSearchNfes', 'budgetNfes', 'verifierCalls', 'unspentNfes'] as const) expect(a[k]).toBe(b[k]);
  // The plan is exact, or (rollover_budget) an upper bound whose unspent rest the account reports.
  expect(BigInt(a.searchNfes) + BigInt(a.unspentNfes ?? '0')).toBe(BigInt(got.plan!.searchNfes));
  expect(BigInt(a.totalNfes)).toBe(BigInt(a.searchNfes) + BigInt(a.finalNfes) + BigInt(a.recoveryNfes));
}

let orch: Orch | undefined;
let baseline: Result;
let pathsBaseline: Result;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ns-resume-e2e-'));
  db = path.join(dir, 'noisesearch.db');
});

afterAll(async () => {
  if (orch && orch.proc.exitCode === null && orch.proc.signalCode === null) {
    orch.close();
    orch.proc.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([orch.exited, new Promise((r) => { timer = setTimeout(r, 20_000); })]);
    clearTimeout(timer);
    if (orch.proc.exitCode === null && orch.proc.signalCode === null) orch.proc.kill('SIGKILL');
  }
  for (const pid of orch?.workerPids ?? []) if (alive(pid)) process.kill(pid, 'SIGKILL');
  fs.rmSync(dir, { recursive: true, force: true });
  process.stdout.write(`resume e2e figures: ${JSON.stringify(figures)}\n`);
});

describe('faults mid-job (real orchestrator and worker processes)', () => {
  it('an uninterrupted run gives the reference result', async () => {
    orch = await startOrchestrator();
    const t0 = Date.now();
    const job = await orch.client.submit(REQUEST);
    const done = await waitFor(orch, job.id, finished);
    expect(done.state).toBe(JobState.JOB_STATE_SUCCEEDED);
    figures.uninterruptedJobS = (Date.now() - t0) / 1000;
    const paths = await waitFor(orch, (await orch.client.submit(PATHS)).id, finished);
    expect(paths.state).toBe(JobState.JOB_STATE_SUCCEEDED);
    pathsBaseline = paths.result!;
    expect(paths.plan!.rounds).toBe(19);
    baseline = done.result!;
    expect(baseline.accounting!.recoveryNfes).toBe('0');
    expect(done.plan!.rounds).toBe(6);
    figures.searchNfes = Number(baseline.accounting!.searchNfes);
    figures.finalNfes = Number(baseline.accounting!.finalNfes);
  });

  it('SIGKILL of the orchestrator after round 2: a restarted one continues from round 3, bit-identical', async () => {
    const job = await orch!.client.submit(REQUEST);
    const pathsJob = await orch!.client.submit(PATHS);
    await waitFor(orch!, job.id, (j) => j.roundsDone >= 2 || finished(j));
    const workerPid = orch!.workerPids[0];
    orch!.proc.kill('SIGKILL');
    const killedAt = Date.now();
    await orch!.exited;
    orch!.close();
    // The spawned worker watches its parent (--parent-pid): it exits by itself, no orphan is left behind.
    for (const t0 = Date.now(); alive(workerPid) && Date.now() - t0 < 30_000;) await new Promise((r) => setTimeout(r, 100));
    expect(alive(workerPid)).toBe(false);
    const row = fromDb(job.id);
    expect(row.state).toBe(JobState.JOB_STATE_RUNNING);
    expect(row.rounds_done).toBeGreaterThanOrEqual(2);
    expect(row.rounds_done).toBeLessThan(6);
    expect(row.checkpoint_round).toBe(row.rounds_done);
    figures.orchestratorKilledAfterRound = row.rounds_done;
    figures.pathsKilledAfterRounds = fromDb(pathsJob.id).rounds_done;

    orch = await startOrchestrator();
    // (Were one left, the successor would stop it: its pid is kept beside the database.)
    expect(alive(workerPid)).toBe(false);
    expect(orch.lines.join('\n')).toMatch(new RegExp(`resuming job ${job.id} \\(after round ${row.rounds_done}`));
    const done = await waitFor(orch, job.id, finished);
    expect(done.state).toBe(JobState.JOB_STATE_SUCCEEDED);
    expect(done.roundsDone).toBe(6);
    expectSameResult(done.result!, baseline);
    const events = await orch.client.watch(job.id);
    expect(events.filter((e) => e.round).map((e) => e.round!.round)).toEqual([1, 2, 3, 4, 5, 6]);
    figures.orchestratorKillToResultS = (Date.now() - killedAt) / 1000;
    figures.orchestratorKillRecoveryNfes = Number(done.result!.accounting!.recoveryNfes);
    // The round in flight at the kill (4 neighbours x Euler 20) was spent twice: the second time is recovery.
    expect(figures.orchestratorKillRecoveryNfes).toBeGreaterThanOrEqual(80);
    expect(orch.lines.join('\n')).toMatch(new RegExp(`job ${job.id}: a previous run died after round ${row.rounds_done} with work in flight`));
    const paths = await waitFor(orch, pathsJob.id, finished);
    expect(paths.state).toBe(JobState.JOB_STATE_SUCCEEDED);
    expectSameResult(paths.result!, pathsBaseline);
    figures.pathsOrchestratorKillRecoveryNfes = Number(paths.result!.accounting!.recoveryNfes);
    expect(figures.pathsOrchestratorKillRecoveryNfes).toBeGreaterThan(0);
  });

  it('SIGKILL of the worker mid-job: respawned, tensors rebuilt from recipes, bit-identical; re-spent NFEs reported apart', async () => {
    const job = await orch!.client.submit(REQUEST);
    const pathsJob = await orch!.client.submit(PATHS);
    await waitFor(orch!, job.id, (j) => j.roundsDone >= 2 || finished(j));
    await sleep(200); // into round 3
    const pid = orch!.workerPids[orch!.workerPids.length - 1];
    process.kill(pid, 'SIGKILL');
    const killedAt = Date.now();
    const done = await waitFor(orch!, job.id, finished);
    expect(done.state).toBe(JobState.JOB_STATE_SUCCEEDED);
    expect(orch!.workerPids.length).toBe(2);
    expect(orch!.workerPids[1]).not.toBe(pid);
    expect(alive(orch!.workerPids[1])).toBe(true);
    expectSameResult(done.result!, baseline);
    const recovery = Number(done.result!.accounting!.recoveryNfes);
    expect(recovery).toBeGreaterThan(0);
    figures.workerKillToResultS = (Date.now() - killedAt) / 1000;
    figures.workerKillRecoveryNfes = recovery;
    // Both searches on the worker noticed; one respawn served them.
    const paths = await waitFor(orch!, pathsJob.id, finished);
    expect(paths.state).toBe(JobState.JOB_STATE_SUCCEEDED);
    expectSameResult(paths.result!, pathsBaseline);
    figures.pathsWorkerKillRecoveryNfes = Number(paths.result!.accounting!.recoveryNfes);
    expect(orch!.workerPids.length).toBe(2);
  });

  it('SIGTERM drains: the round in flight is committed, both processes exit, and the job finishes after a restart', async () => {
    const job = await orch!.client.submit(REQUEST);
    await waitFor(orch!, job.id, (j) => j.roundsDone >= 1 || finished(j));
    const workerPid = orch!.workerPids[orch!.workerPids.length - 1];
    const t0 = Date.now();
    orch!.proc.kill('SIGTERM');
    const exit = await orch!.exited;
    orch!.close();
    figures.drainExitS = (Date.now() - t0) / 1000;
    expect(exit.code === 0 || exit.signal === 'SIGTERM').toBe(true);
    expect(orch!.lines.join('\n')).toMatch(/drained on SIGTERM: 0 job\(s\) finished, 1 left to continue on restart/);
    await sleep(500);
    expect(alive(workerPid)).toBe(false);
    const row = fromDb(job.id);
    expect(row.state).toBe(JobState.JOB_STATE_RUNNING);
    expect(row.rounds_done).toBeGreaterThanOrEqual(1);
    expect(row.checkpoint_round).toBe(row.rounds_done);
    figures.drainedAfterRound = row.rounds_done;

    orch = await startOrchestrator();
    const done = await waitFor(orch, job.id, finished);
    expect(done.state).toBe(JobState.JOB_STATE_SUCCEEDED);
    expectSameResult(done.result!, baseline);
  });
});

describe('the algorithms beyond the paper: SIGKILL of the orchestrator mid-run', () => {
  const baselines: Record<string, Result> = {};

  it('uninterrupted runs give the reference results', async () => {
    orch ??= await startOrchestrator();
    const jobs = await Promise.all(Object.values(BEYOND).map((r) => orch!.client.submit(r)));
    for (const j of jobs) expect(j.plan!.rounds).toBeGreaterThanOrEqual(4);
    for (const [i, name] of Object.keys(BEYOND).entries()) {
      const done = await waitFor(orch!, jobs[i].id, finished);
      expect([name, JobState[done.state], done.error]).toEqual([name, 'JOB_STATE_SUCCEEDED', '']);
      expect(done.result!.accounting!.recoveryNfes).toBe('0');
      baselines[name] = done.result!;
    }
  });

  it.each(Object.keys(BEYOND))('%s: killed after round 1, a restarted orchestrator resumes it bit-identically, the rebuilt tensors charged as recovery', async (name) => {
    const job = await orch!.client.submit(BEYOND[name]);
    await waitFor(orch!, job.id, (j) => j.roundsDone >= 1 || finished(j));
    orch!.proc.kill('SIGKILL');
    await orch!.exited;
    orch!.close();
    const row = fromDb(job.id);
    expect([name, row.state]).toEqual([name, JobState.JOB_STATE_RUNNING]);
    expect(row.checkpoint_round).toBe(row.rounds_done);
    expect(row.rounds_done).toBeLessThan(job.plan!.rounds);
    (figures.beyondKilledAfterRound ??= {} as Record<string, number>);
    (figures.beyondKilledAfterRound as Record<string, number>)[name] = row.rounds_done;

    orch = await startOrchestrator();
    const done = await waitFor(orch, job.id, finished);
    expect([name, JobState[done.state], done.error]).toEqual([name, 'JOB_STATE_SUCCEEDED', '']);
    expectSameResult(done.result!, baselines[name]);
    const events = await orch.client.watch(job.id);
    expect(events.filter((e) => e.round).map((e) => e.round!.round)).toEqual(Array.from({ length: done.roundsDone }, (_, i) => i + 1));
    const recovery = Number(done.result!.accounting!.recoveryNfes);
    expect(recovery).toBeGreaterThan(0);
    (figures.beyondRecoveryNfes ??= {} as Record<string, number>);
    (figures.beyondRecoveryNfes as Record<string, number>)[name] = recovery;
  });
});

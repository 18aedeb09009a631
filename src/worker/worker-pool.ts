// The workers this orchestrator uses: a static address list, a DNS name re-resolved periodically
// (NOISESEARCH_WORKER_DNS: one worker per address, e.g. a Kubernetes headless Service), or one
// spawned local Python worker.
// A search leases one worker for its whole run (its tensor handles live there). When a worker fails
// (UNAVAILABLE, or the local process exited), recover() brings one back: the local worker is
// respawned, or the lease moves to another worker that serves; the search then rebuilds its tensors
// there from their recipes (src/search/resilient-port.ts). A worker whose address left the DNS answer
// drains: it gets no new searches, and those on it move when its calls fail.
//
// Readiness and load: every worker is probed every `probeMs` (grpc.health.v1 Check, then Describe for
// `queued_rows` and `memory_used_bytes`); only SERVING workers get new searches.
// Routing policy (lease()): fill a partly filled micro-batch first, else spread.
//   - The worker always runs max_batch rows per micro-batch (padded, for bit-reproducibility), so rows
//     that join a worker whose queue ends in a partial micro-batch ride on padding that is computed
//     anyway: free throughput. Among such workers: the fewest full batches queued ahead, then the
//     partial batch closest to full.
//   - Otherwise (every queue empty or at a batch boundary) the least loaded worker wins: fewest queued
//     rows, then fewest searches leased here, then least memory used. Starting a new batch on an idle
//     worker costs nothing that waiting behind full batches elsewhere would not.
//   Load reports are at most `probeMs` old; searches leased since the last probe count as load.
import * as grpc from '@grpc/grpc-js';
import { promises as dns } from 'node:dns';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DescribeResponse } from '../gen/noisesearch/worker/v1/worker';
import type { AppConfig } from '../config/config';
import { LocalWorker, repoRoot } from './local-worker';
import { WorkerCallError, WorkerRpc, WorkerRpcOptions } from './worker-rpc';

export interface PoolLogger {
  log(message: string): void;
  warn(message: string): void;
  debug?(message: string): void;
}

export interface PooledWorker {
  rpc: WorkerRpc;
  local?: LocalWorker;
  /** Searches holding this worker now. */
  leases: number;
  /** Last grpc.health.v1 answer (undefined: not probed yet, counts as ready). */
  serving?: boolean;
  /** Last Describe: rows waiting in its schedulers, memory in use, micro-batch size. */
  queuedRows?: number;
  memoryUsedBytes?: number;
  maxBatch?: number;
  /** Its address left the DNS answer: no new searches. */
  gone?: boolean;
  /** A respawn of the local worker in progress (shared by every search that noticed the fault). */
  respawning?: Promise<void>;
  /** Times the local worker was respawned. */
  respawns?: number;
}

export interface WorkerLease {
  /** The worker's client now (it changes when the worker is respawned or the lease moves). */
  readonly rpc: WorkerRpc;
  release(): void;
}

/**
 * A failed worker call that means the worker (not the request) failed: UNAVAILABLE, or CANCELLED that
 * this side did not ask for (a call cut by the worker's death can end CANCELLED when its connection is
 * reset mid-stream; callers never ask recover() about a search they cancelled themselves).
 */
export function isWorkerFault(e: unknown): boolean {
  return e instanceof WorkerCallError && (e.code === grpc.status.UNAVAILABLE || e.code === grpc.status.CANCELLED);
}

export function rpcOptions(config: AppConfig): WorkerRpcOptions {
  return {
    deadlineMs: config.workerDeadlineMs,
    denoiseDeadlineMs: config.workerDenoiseDeadlineMs,
    retries: config.workerRetries,
    retryBackoffMs: config.workerRetryBackoffMs,
    maxMessageBytes: config.maxMessageBytes,
  };
}

/**
 * The worker to lease a new search to (see the policy above); undefined when none is ready.
 * Exported for the unit tests.
 */
export function pickWorker(workers: PooledWorker[]): PooledWorker | undefined {
  const ready = workers.filter((w) => w.serving !== false && !w.gone);
  if (ready.length === 0) return undefined;
  const rows = (w: PooledWorker) => w.queuedRows ?? 0;
  const partial = ready.filter((w) => (w.maxBatch ?? 0) > 0 && rows(w) % w.maxBatch! !== 0);
  if (partial.length > 0) {
    // Fewest full batches ahead of the new rows, then the partial batch closest to full.
    const key = (w: PooledWorker) => [Math.floor(rows(w) / w.maxBatch!), -(rows(w) % w.maxBatch!)];
    return partial.reduce((a, b) => {
      const [ka, kb] = [key(a), key(b)];
      return kb[0] < ka[0] || (kb[0] === ka[0] && kb[1] < ka[1]) ? b : a;
    });
  }
  return ready.reduce((a, b) => {
    if (rows(b) !== rows(a)) return rows(b) < rows(a) ? b : a;
    if (b.leases !== a.leases) return b.leases < a.leases ? b : a;
    return (b.memoryUsedBytes ?? 0) < (a.memoryUsedBytes ?? 0) ? b : a;
  });
}

export class WorkerPool {
  readonly workers: PooledWorker[] = [];
  /** Describe of the first worker (the pool assumes identical workers). */
  describe?: DescribeResponse;
  private stopping = false;
  private timers: NodeJS.Timeout[] = [];
  /** How often workers are probed (health + load) and the DNS name re-resolved at most. */
  probeMs = 2_000;
  private exitHook = () => this.workers.forEach((w) => w.local?.killNow());

  constructor(private readonly config: AppConfig, private readonly logger: PoolLogger = console) {}

  /** Spawns or connects, waits until every worker is serving, then describes them. */
  async start(): Promise<void> {
    const opts = rpcOptions(this.config);
    if (this.config.workerAddresses.length > 0 || this.config.workerDns) {
      for (const address of this.config.workerAddresses) this.workers.push({ rpc: new WorkerRpc(address, opts), leases: 0 });
      if (this.config.workerDns) {
        const deadline = Date.now() + this.config.workerStartTimeoutMs;
        while ((await this.resolve().catch(() => 0)) === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 1_000));
        if (this.workers.length === 0) throw new Error(`no worker: ${this.config.workerDns} resolved to no address within ${this.config.workerStartTimeoutMs} ms`);
        this.every(this.config.workerDnsRefreshMs, () => this.resolve());
      }
      // Ready when one serves; the others join when their probe says SERVING.
      const first = await Promise.any(this.workers.map(async (w) => { await w.rpc.waitForReady(this.config.workerStartTimeoutMs); return w; }))
        .catch(() => { throw new Error(`no worker serving after ${this.config.workerStartTimeoutMs} ms: ${this.workers.map((w) => w.rpc.address).join(', ')}`); });
      this.describe = await first.rpc.call('describe', {});
      await this.probe();
      this.every(this.probeMs, () => this.probe());
      this.logger.log(`workers: ${this.workers.map((w) => `${w.rpc.address}${w.serving ? '' : ' (not ready)'}`).join(', ')}; models: ${this.describe.models.map((m) => m.name).join(', ')}`);
      return;
    } else {
      let entry: PooledWorker | undefined;
      const local = new LocalWorker({
        python: this.config.python,
        cwd: this.config.workerCwd || repoRoot(),
        extraArgs: this.config.workerExtraArgs,
        startTimeoutMs: this.config.workerStartTimeoutMs,
        onLog: (line) => this.logger.debug?.(`[worker] ${line}`),
        onExit: (pid, code, signal) => {
          if (this.stopping || !entry || entry.respawning) return;
          this.logger.warn(`local worker pid ${pid} exited (code ${code}, signal ${signal}): respawning it`);
          this.respawn(entry).catch((e) => this.logger.warn(`respawning the local worker failed: ${e instanceof Error ? e.message : e}`));
        },
      });
      process.once('exit', this.exitHook);
      this.reapOrphan();
      this.logger.log(`spawning the local worker (${this.config.python} -m noisesearch_worker serve)`);
      const address = await local.start();
      this.recordPid(local.pid);
      this.logger.log(`local worker pid ${local.pid} serving at ${address}`);
      entry = { rpc: new WorkerRpc(address, { ...opts, token: local.token }), local, leases: 0, respawns: 0 };
      this.workers.push(entry);
    }
    await Promise.all(this.workers.map((w) => w.rpc.waitForReady(this.config.workerStartTimeoutMs)));
    this.describe = await this.workers[0].rpc.call('describe', {});
    this.logger.log(`workers ready: ${this.workers.map((w) => w.rpc.address).join(', ')}; models: ${this.describe.models.map((m) => m.name).join(', ')}`);
  }

  /** A worker for a new search (pickWorker's policy), held until `release()`. */
  lease(): WorkerLease {
    if (this.workers.length === 0) throw new Error('no worker available');
    // None ready (all failing their probes): the least leased; the search's recovery waits for one.
    const w = pickWorker(this.workers) ?? this.workers.reduce((a, b) => (b.leases < a.leases ? b : a));
    w.leases++;
    return new Lease(w);
  }

  private every(ms: number, fn: () => Promise<unknown>): void {
    let busy = false;
    const t = setInterval(() => {
      if (busy || this.stopping) return;
      busy = true;
      fn().catch((e) => this.logger.debug?.(`worker pool: ${e instanceof Error ? e.message : e}`)).finally(() => { busy = false; });
    }, ms);
    t.unref();
    this.timers.push(t);
  }

  /** Health and load of every worker. */
  private async probe(): Promise<void> {
    await Promise.all(this.workers.map(async (w) => {
      const serving = await w.rpc.isServing(1_000).catch(() => false);
      if (serving !== w.serving && w.serving !== undefined) this.logger.log(`worker ${w.rpc.address} ${serving ? 'serving again' : 'not serving'}`);
      w.serving = serving;
      if (!serving) return;
      const d = await w.rpc.call('describe', {}).catch(() => undefined);
      if (d) {
        w.queuedRows = Number(d.queuedRows ?? 0);
        w.memoryUsedBytes = Number(d.memoryUsedBytes ?? 0);
        w.maxBatch = d.maxBatch;
      }
    }));
    // Workers that left the DNS answer go once no search holds them.
    for (const w of this.workers.filter((x) => x.gone && x.leases === 0)) {
      this.workers.splice(this.workers.indexOf(w), 1);
      w.rpc.close();
    }
  }

  /** Re-resolves NOISESEARCH_WORKER_DNS: new addresses join, vanished ones drain. Returns how many resolved. */
  private async resolve(): Promise<number> {
    const spec = this.config.workerDns;
    const i = spec.lastIndexOf(':');
    const host = spec.slice(0, i).replace(/^\[|\]$/g, '');
    const port = spec.slice(i + 1);
    const found = (await dns.lookup(host, { all: true })).map((a) => (a.family === 6 ? `[${a.address}]:${port}` : `${a.address}:${port}`));
    const now = new Set(found);
    for (const w of this.workers) {
      const gone = !now.has(w.rpc.address);
      if (gone !== !!w.gone) this.logger.log(`worker ${w.rpc.address} ${gone ? 'left' : 'is back in'} ${spec}${gone ? ': draining it' : ''}`);
      w.gone = gone;
    }
    for (const address of found) {
      if (this.workers.some((w) => w.rpc.address === address)) continue;
      this.workers.push({ rpc: new WorkerRpc(address, rpcOptions(this.config)), leases: 0 });
      this.logger.log(`worker ${address} joined (${spec})`);
    }
    return found.length;
  }

  /**
   * After a failed call of a leased worker: a client of a worker that serves again (the local worker
   * respawned, or another configured worker), holding none of the search's tensors; undefined when the
   * error is not a worker fault or no worker can be brought back.
   */
  async recover(lease: WorkerLease, error: unknown): Promise<WorkerRpc | undefined> {
    const w = lease instanceof Lease ? lease.worker : undefined;
    if (this.stopping || !w) return undefined;
    const localDied = !!w.local && !w.local.running;
    if (!isWorkerFault(error) && !localDied) return undefined;
    if (w.local) {
      // Respawn unless the worker already came back (another search, or the exit handler, did it).
      if (w.respawning) await w.respawning;
      else if (!w.local.running || !(await w.rpc.isServing(1_000))) await this.respawn(w);
      return this.stopping ? undefined : w.rpc;
    }
    // A configured worker: move to another one that serves (the pool's choice first), else wait for this one to come back.
    w.serving = false;
    const best = pickWorker(this.workers.filter((o) => o !== w));
    const others = [...(best ? [best] : []), ...this.workers.filter((o) => o !== w && o !== best).sort((a, b) => a.leases - b.leases)];
    for (const o of others) {
      if (await o.rpc.isServing(1_000).catch(() => false)) {
        (lease as Lease).move(o);
        this.logger.warn(`worker ${w.rpc.address} failed (${error instanceof Error ? error.message : error}); a search moved to ${o.rpc.address}`);
        return o.rpc;
      }
    }
    try {
      await w.rpc.waitForReady(this.config.workerStartTimeoutMs);
      return w.rpc;
    } catch {
      return undefined;
    }
  }

  /** Beside a database file: the pid of the local worker, so that a successor can stop an orphan. */
  private pidFile(): string | undefined {
    const db = this.config.db;
    return db && db !== ':memory:' ? `${path.resolve(db)}.worker.pid` : undefined;
  }

  private recordPid(pid: number | undefined): void {
    const file = this.pidFile();
    if (file && pid) fs.writeFileSync(file, `${pid}\n`);
  }

  /** A predecessor killed with SIGKILL left its worker running (holding memory): stop it. */
  private reapOrphan(): void {
    const file = this.pidFile();
    if (!file) return;
    let pid: number;
    let cmdline: string;
    try {
      pid = Number(fs.readFileSync(file, 'utf8').trim());
      cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      return; // no file, or the process is gone
    }
    if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid || !cmdline.includes('noisesearch_worker')) return;
    try {
      process.kill(pid, 'SIGKILL');
      this.logger.warn(`stopped the local worker (pid ${pid}) left running by a previous orchestrator`);
    } catch {
      /* gone meanwhile, or not ours to kill */
    }
  }

  /** Restarts the local worker (once, however many searches ask at the same time). */
  private respawn(w: PooledWorker): Promise<void> {
    if (w.respawning) return w.respawning;
    const local = w.local!;
    const run = async () => {
      const old = w.rpc;
      await local.stop(2_000);
      const address = await local.start();
      w.rpc = new WorkerRpc(address, { ...rpcOptions(this.config), token: local.token });
      this.recordPid(local.pid);
      old.close();
      await w.rpc.waitForReady(this.config.workerStartTimeoutMs);
      w.respawns = (w.respawns ?? 0) + 1;
      this.logger.log(`local worker pid ${local.pid} serving at ${address} (respawned)`);
    };
    w.respawning = run().finally(() => { w.respawning = undefined; });
    return w.respawning;
  }

  /** Health of each worker (for GET /health). */
  async health(): Promise<{ address: string; serving: boolean; spawned: boolean; pid?: number; inFlight: number; leases: number }[]> {
    return Promise.all(this.workers.map(async (w) => ({
      address: w.rpc.address,
      serving: await w.rpc.isServing(1_000).catch(() => false),
      spawned: !!w.local,
      pid: w.local?.pid,
      inFlight: w.rpc.inFlight,
      leases: w.leases,
    })));
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    for (const t of this.timers.splice(0)) clearInterval(t);
    await Promise.all(this.workers.map((w) => w.respawning?.catch(() => undefined)));
    for (const w of this.workers) w.rpc.close();
    await Promise.all(this.workers.map((w) => w.local?.stop()));
    process.removeListener('exit', this.exitHook);
    const file = this.pidFile();
    if (file && this.workers.some((w) => w.local)) fs.rmSync(file, { force: true });
  }
}

class Lease implements WorkerLease {
  private released = false;

  constructor(public worker: PooledWorker) {}

  get rpc(): WorkerRpc {
    return this.worker.rpc;
  }

  move(to: PooledWorker): void {
    if (this.released) return;
    this.worker.leases--;
    to.leases++;
    this.worker = to;
  }

  release(): void {
    if (!this.released) {
      this.released = true;
      this.worker.leases--;
    }
  }
}

// The workers this orchestrator uses: the configured addresses, or one spawned local Python worker.
// A search leases one worker for its whole run (its tensor handles live there). When a worker fails
// (UNAVAILABLE, or the local process exited), recover() brings one back: the local worker is
// respawned, or the lease moves to another configured worker that serves; the search then rebuilds
// its tensors there from their recipes (src/search/resilient-port.ts).
import * as grpc from '@grpc/grpc-js';
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

/** A failed worker call that means the worker (not the request) failed. */
export function isWorkerFault(e: unknown): boolean {
  return e instanceof WorkerCallError && e.code === grpc.status.UNAVAILABLE;
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

export class WorkerPool {
  readonly workers: PooledWorker[] = [];
  /** Describe of the first worker (the pool assumes identical workers). */
  describe?: DescribeResponse;
  private stopping = false;
  private exitHook = () => this.workers.forEach((w) => w.local?.killNow());

  constructor(private readonly config: AppConfig, private readonly logger: PoolLogger = console) {}

  /** Spawns or connects, waits until every worker is serving, then describes them. */
  async start(): Promise<void> {
    const opts = rpcOptions(this.config);
    if (this.config.workerAddresses.length > 0) {
      for (const address of this.config.workerAddresses) this.workers.push({ rpc: new WorkerRpc(address, opts), leases: 0 });
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

  /** The least-leased worker, held until `release()`. */
  lease(): WorkerLease {
    if (this.workers.length === 0) throw new Error('no worker available');
    const w = this.workers.reduce((a, b) => (b.leases < a.leases ? b : a));
    w.leases++;
    return new Lease(w);
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
    // A configured worker: move to another one that serves, else wait for this one to come back.
    const others = this.workers.filter((o) => o !== w).sort((a, b) => a.leases - b.leases);
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

// The workers this orchestrator uses: the configured addresses, or one spawned local Python worker.
// A search leases one worker for its whole run (its tensor handles live there).
import type { DescribeResponse } from '../gen/noisesearch/worker/v1/worker';
import type { AppConfig } from '../config/config';
import { LocalWorker, repoRoot } from './local-worker';
import { WorkerRpc, WorkerRpcOptions } from './worker-rpc';

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
}

export interface WorkerLease {
  rpc: WorkerRpc;
  release(): void;
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
      const local = new LocalWorker({
        python: this.config.python,
        cwd: this.config.workerCwd || repoRoot(),
        extraArgs: this.config.workerExtraArgs,
        startTimeoutMs: this.config.workerStartTimeoutMs,
        onLog: (line) => this.logger.debug?.(`[worker] ${line}`),
      });
      process.once('exit', this.exitHook);
      this.logger.log(`spawning the local worker (${this.config.python} -m noisesearch_worker serve)`);
      const address = await local.start();
      this.logger.log(`local worker pid ${local.pid} serving at ${address}`);
      this.workers.push({ rpc: new WorkerRpc(address, opts), local, leases: 0 });
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
    let released = false;
    return {
      rpc: w.rpc,
      release: () => {
        if (!released) { released = true; w.leases--; }
      },
    };
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
    for (const w of this.workers) w.rpc.close();
    await Promise.all(this.workers.map((w) => w.local?.stop()));
    process.removeListener('exit', this.exitHook);
  }
}

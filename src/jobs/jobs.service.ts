import {
  BeforeApplicationShutdown, Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown,
} from '@nestjs/common';
import { APP_CONFIG, AppConfig, limitsOf } from '../config/config';
import { WorkerService } from '../worker/worker.service';
import { CoreSearchRunner } from './core-search-runner';
import { BullJobQueue } from './job-queue';
import { JobRegistry } from './job-registry';
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import { SqlJobStore } from './sql-job-store';

/**
 * The job registry, wired to the real search core, the worker pool and the store (SQLite, or
 * PostgreSQL shared by replicas with the BullMQ queue on Redis: see job-registry.ts). On start
 * it continues the jobs a previous process left unfinished; on shutdown (SIGTERM) it drains: running
 * jobs stop after committing their round in flight, and continue when the orchestrator starts again.
 */
@Injectable()
export class JobsService extends JobRegistry implements OnApplicationBootstrap, BeforeApplicationShutdown, OnApplicationShutdown {
  private readonly logger: Logger;
  private readonly jobStore: SqlJobStore;

  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig, workers: WorkerService) {
    const logger = new Logger('Jobs');
    // PostgreSQL: a replica paused inside a round's transaction holds the job's row lock; the server ends
    // that session once it sat idle in it for a lease (by then the queue gives the job to another replica
    // anyway), so that replica can take the job. Shorter would also end slow but live transactions on a
    // loaded machine.
    const store = new SqlJobStore({ path: config.db, dataDir: config.dataDir, idleInTransactionMs: config.leaseMs });
    // Shared store: this replica's name (in logs and as the holder of its fencing tokens).
    const owner = `${os.hostname()}/${process.pid}/${randomBytes(3).toString('hex')}`;
    // loadConfig makes sure a postgres:// store comes with a queue (and only then).
    const queue = store.shared ? new BullJobQueue({
      url: config.queue, concurrency: config.maxRunningJobs, lockMs: config.leaseMs, log: (m) => logger.warn(m),
    }) : undefined;
    super(new CoreSearchRunner(workers, limitsOf(config), (m) => logger.warn(m)), {
      maxRunningJobs: config.maxRunningJobs,
      maxJobsKept: config.maxJobsKept,
      log: (m) => logger.log(m),
      // Cancels asked on other replicas are seen within a third of the lease.
      shared: queue && { owner, queue, checkMs: Math.max(100, Math.floor(config.leaseMs / 3)), requeueMs: Math.max(10_000, 10 * config.leaseMs) },
    }, store);
    this.logger = logger;
    this.jobStore = store;
    const { from, to } = store.migrated;
    const hide = (url: string) => url.replace(/\/\/[^@/]*@/, '//');
    const where = store.shared
      ? `PostgreSQL ${hide(config.db)} (shared; replica ${owner}; queue BullMQ on ${hide(config.queue)}, leases of ${config.leaseMs} ms)`
      : config.db;
    logger.log(`job store ${where}${from !== to ? ` (schema ${from} -> ${to})` : ''}`);
  }

  /** After every module is ready (the workers serve): continue unfinished jobs. */
  onApplicationBootstrap(): void {
    const ids = this.resumeUnfinished();
    if (ids.length > 0) this.logger.log(`continuing ${ids.length} unfinished job(s) from their last committed round`);
  }

  async beforeApplicationShutdown(signal?: string): Promise<void> {
    // Nothing outlives an in-memory store: cancel (as a store-less orchestrator would) instead of draining.
    if (this.config.db === ':memory:') return this.close();
    const { finished, left } = await this.drain(this.config.drainTimeoutMs);
    if (finished + left > 0 || signal) {
      this.logger.log(`drained${signal ? ` on ${signal}` : ''}: ${finished} job(s) finished, ${left} left to continue on restart`);
    }
  }

  onApplicationShutdown(): void {
    this.jobStore.close();
  }
}

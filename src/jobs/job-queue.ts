// The queue that dispatches jobs to replicas when they share a store (PostgreSQL): BullMQ on Redis
// (NOISESEARCH_QUEUE=redis://host:port). BullMQ dispatches; PostgreSQL stays the source of truth and
// the fence. The queue carries job ids only. Each replica runs one BullMQ Worker with concurrency =
// its running-jobs limit; BullMQ holds a lock per running job (lockDuration = the lease) and renews
// it while the job runs. When a replica dies or is paused past its lock, any replica's stalled check
// moves the job back to wait and another replica takes it: the processor takes a new fencing token in
// the store (job-registry.ts), so the one that lost the job commits nothing, even if it wakes up.
import { Queue, WaitingError, Worker } from 'bullmq';

/** What became of a job this replica took: it ended here (or was lost), or it goes back to wait (drain). */
export type Outcome = 'done' | 'requeue';

/** The part of the queue the job registry uses (no BullMQ types in the registry). */
export interface DispatchQueue {
  /** Puts the jobs in the queue; one already there (waiting or running) is left as it is (job id = queue id). */
  add(ids: string[]): Promise<void>;
  /** Removes a job that no replica runs now; false while one runs it (holds its lock). */
  removeUnlocked(id: string): Promise<boolean>;
  /** Starts taking jobs: `run` runs one to its end; `lost` hears of running jobs whose lock this replica lost. */
  start(run: (id: string) => Promise<Outcome>, lost: (ids: string[]) => void): void;
  /** Takes no new jobs at once; resolves once the running ones returned and the connections are closed. */
  close(): Promise<void>;
}

export interface JobQueueOptions {
  /** redis://host:port[/db] */
  url: string;
  /** Jobs this replica runs at once (its running-jobs limit). */
  concurrency: number;
  /** How long a job stays locked to a replica that stopped renewing it (the lease, ms). */
  lockMs: number;
  /** Queue name (the Redis keys are bull:<name>:*). */
  name?: string;
  log?: (message: string) => void;
}

export const isRedisUrl = (s: string) => /^rediss?:\/\/[^\s]+$/.test(s);

export class BullJobQueue implements DispatchQueue {
  private readonly queue: Queue;
  private worker?: Worker;
  private closing?: Promise<void>;
  private readonly connection: { url: string; maxRetriesPerRequest: null };

  constructor(private readonly opts: JobQueueOptions) {
    if (!isRedisUrl(opts.url)) throw new Error(`not a redis:// URL: ${JSON.stringify(opts.url)}`);
    // maxRetriesPerRequest: null: commands wait for Redis to come back instead of failing (BullMQ's advice for workers).
    this.connection = { url: opts.url, maxRetriesPerRequest: null };
    this.queue = new Queue(this.name, {
      connection: this.connection,
      // A finished job leaves Redis: the store keeps it (and drops it if it is ever queued again).
      defaultJobOptions: { removeOnComplete: true, removeOnFail: true },
    });
    this.queue.on('error', (e) => this.log(`queue: ${e.message}`));
  }

  private get name(): string {
    return this.opts.name ?? 'noisesearch-jobs';
  }

  private log(m: string): void {
    this.opts.log?.(m);
  }

  async add(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.queue.addBulk(ids.map((id) => ({ name: 'search', data: {}, opts: { jobId: id } })));
  }

  async removeUnlocked(id: string): Promise<boolean> {
    // BullMQ removes a job unless it is locked (1: removed, or not in the queue; 0: locked by a running replica).
    return (await this.queue.remove(id)) === 1;
  }

  start(run: (id: string) => Promise<Outcome>, lost: (ids: string[]) => void): void {
    if (this.worker) throw new Error('the queue worker is already started');
    this.worker = new Worker(this.name, async (job, token) => {
      if ((await run(job.id!)) === 'requeue') {
        // Back to wait at once, for any replica (BullMQ's documented way: move it, then throw WaitingError).
        await job.moveToWait(token);
        throw new WaitingError();
      }
    }, {
      connection: this.connection,
      concurrency: this.opts.concurrency,
      lockDuration: this.opts.lockMs,
      // Stalled jobs (lock expired) are looked for every lease; a job is never failed for stalling, however
      // often: every stall is a replica that died or was paused, and the job must always be resumed.
      stalledInterval: this.opts.lockMs,
      maxStalledCount: Number.MAX_SAFE_INTEGER,
    });
    this.worker.on('lockRenewalFailed', (ids: string[]) => lost(ids));
    this.worker.on('error', (e) => this.log(`queue worker: ${e.message}`));
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.worker?.close();
      await this.queue.close();
    })();
    return this.closing;
  }
}

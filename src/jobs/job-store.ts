// Where jobs, their events and their search checkpoints live. InMemoryJobStore for unit tests;
// SqliteJobStore (sqlite-job-store.ts) for the service: jobs survive the process.
import { Job, JobState, SearchEvent } from '../gen/noisesearch/search/v1/search';
import { decodeCheckpoint, encodeCheckpoint, type SearchCheckpoint } from '../search/checkpoint';

export const TERMINAL_STATES: ReadonlySet<JobState> = new Set([
  JobState.JOB_STATE_SUCCEEDED, JobState.JOB_STATE_FAILED, JobState.JOB_STATE_CANCELLED,
]);

export interface JobError {
  /** SearchError-style code (INVALID_ARGUMENT, CANCELLED, INTERNAL, ...) or a gRPC status name. */
  code: string;
  message: string;
}

export interface ListFilter {
  /** UNSPECIFIED = all. */
  state: JobState;
  limit: number;
}

export interface JobStore {
  /** Runs `fn` atomically: everything it writes is committed together, or nothing is. */
  transaction<T>(fn: () => T): T;
  create(job: Job): void;
  get(id: string): Job | undefined;
  /** Shallow-merges `patch` into the job and returns the new job. */
  update(id: string, patch: Partial<Job>): Job;
  appendEvent(id: string, event: SearchEvent): void;
  /** Every event of the job so far, in order. */
  events(id: string): SearchEvent[];
  setError(id: string, error: JobError): void;
  error(id: string): JobError | undefined;
  /** Newest first. */
  list(filter: ListFilter): Job[];
  /** Forgets the oldest finished jobs beyond `keep`; returns the ids forgotten. */
  prune(keep: number): string[];
  /** The search state after the job's last committed round (replaces the previous one). */
  saveCheckpoint(id: string, checkpoint: SearchCheckpoint): void;
  checkpoint(id: string): SearchCheckpoint | undefined;
  /** QUEUED and RUNNING jobs, oldest first (what a restarted orchestrator continues). */
  unfinished(): Job[];
  close(): void;
}

interface Entry {
  job: Job;
  events: SearchEvent[];
  error?: JobError;
  seq: number;
  /** Encoded, as a database would hold it. */
  checkpoint?: string;
}

export class InMemoryJobStore implements JobStore {
  private readonly entries = new Map<string, Entry>();
  private seq = 0;

  transaction<T>(fn: () => T): T {
    return fn();
  }

  saveCheckpoint(id: string, checkpoint: SearchCheckpoint): void {
    this.must(id).checkpoint = encodeCheckpoint(checkpoint);
  }

  checkpoint(id: string): SearchCheckpoint | undefined {
    const c = this.entries.get(id)?.checkpoint;
    return c === undefined ? undefined : decodeCheckpoint(c);
  }

  unfinished(): Job[] {
    return [...this.entries.values()]
      .filter((e) => e.job.state === JobState.JOB_STATE_QUEUED || e.job.state === JobState.JOB_STATE_RUNNING)
      .sort((a, b) => a.seq - b.seq)
      .map((e) => ({ ...e.job }));
  }

  close(): void {}

  create(job: Job): void {
    if (this.entries.has(job.id)) throw new Error(`job ${job.id} exists`);
    this.entries.set(job.id, { job: { ...job }, events: [], seq: this.seq++ });
  }

  get(id: string): Job | undefined {
    const e = this.entries.get(id);
    return e ? { ...e.job } : undefined;
  }

  update(id: string, patch: Partial<Job>): Job {
    const e = this.must(id);
    e.job = { ...e.job, ...patch };
    return { ...e.job };
  }

  appendEvent(id: string, event: SearchEvent): void {
    this.must(id).events.push(event);
  }

  events(id: string): SearchEvent[] {
    return [...this.must(id).events];
  }

  setError(id: string, error: JobError): void {
    this.must(id).error = error;
  }

  error(id: string): JobError | undefined {
    return this.entries.get(id)?.error;
  }

  list(filter: ListFilter): Job[] {
    const all = [...this.entries.values()].sort((a, b) => b.seq - a.seq);
    const out: Job[] = [];
    for (const e of all) {
      if (filter.state !== JobState.JOB_STATE_UNSPECIFIED && e.job.state !== filter.state) continue;
      out.push({ ...e.job });
      if (out.length >= filter.limit) break;
    }
    return out;
  }

  prune(keep: number): string[] {
    const finished = [...this.entries.entries()]
      .filter(([, e]) => TERMINAL_STATES.has(e.job.state))
      .sort((a, b) => a[1].seq - b[1].seq);
    const drop = finished.slice(0, Math.max(0, finished.length - keep)).map(([id]) => id);
    for (const id of drop) this.entries.delete(id);
    return drop;
  }

  private must(id: string): Entry {
    const e = this.entries.get(id);
    if (!e) throw new Error(`no job ${id}`);
    return e;
  }
}

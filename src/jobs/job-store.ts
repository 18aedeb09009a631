// Where jobs, their events and their search checkpoints live: SqlJobStore (sql-job-store.ts) on
// SQLite (a file, or ':memory:' for tests) or on PostgreSQL (shared by replicas; jobs dispatched by the
// queue, job-queue.ts, and committed under fencing tokens).
import { Job, JobState, SearchEvent } from '../gen/noisesearch/search/v1/search';
import type { SearchCheckpoint } from '../search/checkpoint';
import type { CandidatePreview } from '../search/previews';

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
  /** Every event of the job so far (from the `from`-th on), in order. */
  events(id: string, from?: number): SearchEvent[];
  setError(id: string, error: JobError): void;
  error(id: string): JobError | undefined;
  /** Newest first. */
  list(filter: ListFilter): Job[];
  /** How many jobs are in `state`. */
  count(state: JobState): number;
  /** Forgets the oldest finished jobs beyond `keep`; returns the ids forgotten. */
  prune(keep: number): string[];
  /** The search state after the job's last committed round (replaces the previous one). */
  saveCheckpoint(id: string, checkpoint: SearchCheckpoint): void;
  checkpoint(id: string): SearchCheckpoint | undefined;
  /** Kept candidates' dashboard previews (a candidate's first preview stays: a repeated round adds nothing). */
  savePreviews(id: string, previews: CandidatePreview[]): void;
  /** A kept candidate's preview PNG; undefined when none was saved. */
  preview(id: string, candidateId: string): Buffer | undefined;
  /** QUEUED and RUNNING jobs, oldest first (what a restarted orchestrator continues). */
  unfinished(): Job[];
  close(): void;

  /** Several processes share this store: jobs reach replicas through the queue and commit under fencing tokens. */
  readonly shared: boolean;
  /** The round in flight: the last committed round when a run started or committed a round (null = none in flight). */
  markInFlight(id: string, afterRound: number | null): void;
  inFlight(id: string): { afterRound: number | null; lostNfes: number };
  /** NFEs spent by runs that died mid-round (charged as recovery NFEs). */
  addLostNfes(id: string, nfes: number): void;
  /** Takes an unfinished job for `owner` with the next fencing token (every earlier holder is fenced off); undefined if finished or gone. */
  takeLease(id: string, owner: string): number | undefined;
  /** Whether `token` still holds the job (undefined: lost) and whether a cancel was asked. */
  leaseCheck(id: string, token: number): { cancel: boolean } | undefined;
  /** Inside a transaction: throws LeaseLostError unless `token` still holds the job. */
  fence(id: string, token: number): void;
  requestCancel(id: string): void;
}

/** The replica's lease on the job was taken over (it was paused or cut off past its lease): it must commit nothing. */
export class LeaseLostError extends Error {
  constructor(readonly jobId: string, readonly token: number) {
    super(`lease ${token} on job ${jobId} was lost to another replica: nothing committed`);
    this.name = 'LeaseLostError';
  }
}

// The job registry: Submit / Get / Watch / Cancel / List and the synchronous Search stream.
// Plain class (no framework); jobs.service.ts gives it to Nest.
import { randomUUID } from 'node:crypto';
import { Observable, Subject } from 'rxjs';
import {
  Job, JobState, Plan, Result, Round, SearchEvent, SearchRequest,
} from '../gen/noisesearch/search/v1/search';
import type { SearchCheckpoint } from '../search/checkpoint';
import { asSearchError } from '../api/public-errors';
import { SearchError, isSearchErrorCode } from '../search/errors';
import { InMemoryJobStore, JobError, JobStore, TERMINAL_STATES } from './job-store';
import type { SearchRunner } from './search-runner';

export interface JobRegistryOptions {
  maxRunningJobs: number;
  maxJobsKept: number;
  /** How long Cancel waits for a running job's in-flight worker calls to stop. */
  cancelWaitMs?: number;
  now?: () => Date;
  log?: (message: string) => void;
}

/** Thrown from a round callback while draining: the round is committed, the job stops here and resumes after a restart. */
export class DrainedError extends Error {
  constructor(readonly jobId: string) {
    super(`job ${jobId} stopped after its last committed round: the orchestrator is shutting down`);
    this.name = 'DrainedError';
  }
}

/** Any error of a run, as a code (a gRPC status name) and a public message (src/api/grpc-errors.ts). */
export function toJobError(e: unknown, signal?: AbortSignal, log?: (m: string) => void): JobError {
  const s = asSearchError(e, signal, log);
  return { code: s.code, message: s.message };
}

export function errorFromJob(error: JobError): SearchError {
  return new SearchError(isSearchErrorCode(error.code) ? error.code : 'INTERNAL', error.message);
}

interface Live {
  subject: Subject<SearchEvent>;
  controller: AbortController;
  done?: Promise<void>;
}

/** Bytes of candidate previews kept in memory (the oldest are dropped first). */
const PREVIEW_BYTES = 64 * 1024 * 1024;

export class JobRegistry {
  private readonly live = new Map<string, Live>();
  /** `${jobId}/${candidateId}` -> PNG, decoded at round time (see SearchRunEvents.onPreviews). */
  private readonly previews = new Map<string, Buffer>();
  private previewBytes = 0;
  private readonly queue: string[] = [];
  private running = 0;
  private readonly now: () => Date;
  private closed = false;
  private draining = false;

  constructor(
    private readonly runner: SearchRunner,
    private readonly options: JobRegistryOptions,
    private readonly store: JobStore = new InMemoryJobStore(),
  ) {
    this.now = options.now ?? (() => new Date());
  }

  /** The plan without running anything (validates the request). */
  plan(request: SearchRequest): Plan {
    return this.runner.plan(request);
  }

  /** Validates, creates the job (QUEUED, or RUNNING when a slot is free) and returns it. */
  submit(request: SearchRequest): Job {
    if (this.closed) throw new SearchError('FAILED_PRECONDITION', 'the orchestrator is shutting down');
    const plan = this.runner.plan(request);
    const id = `job-${randomUUID()}`;
    const job: Job = {
      id,
      state: JobState.JOB_STATE_QUEUED,
      request,
      plan,
      roundsDone: 0,
      nfesSpent: '0',
      result: undefined,
      error: '',
      createdAt: this.now().toISOString(),
      finishedAt: '',
    };
    this.store.transaction(() => {
      this.store.create(job);
      this.store.appendEvent(id, { jobId: id, plan });
    });
    this.live.set(id, { subject: new Subject<SearchEvent>(), controller: new AbortController() });
    this.queue.push(id);
    this.pump();
    return this.get(id);
  }

  get(id: string): Job {
    const job = this.store.get(id);
    if (!job) throw new SearchError('NOT_FOUND', `no job ${JSON.stringify(id)}`, 'id');
    return job;
  }

  /** Newest first; without results (they carry images: Get a job for its result). */
  list(state: JobState = JobState.JOB_STATE_UNSPECIFIED, limit = 0): Job[] {
    return this.store.list({ state, limit: limit > 0 ? limit : 50 }).map((j) => ({ ...j, result: undefined }));
  }

  /** Past events, then live ones; completes after the result, errors if the job failed or was cancelled. */
  watch(id: string): Observable<SearchEvent> {
    this.get(id); // NOT_FOUND before subscribing
    return new Observable<SearchEvent>((subscriber) => {
      const job = this.store.get(id);
      if (!job) {
        subscriber.error(new SearchError('NOT_FOUND', `no job ${JSON.stringify(id)}`, 'id'));
        return;
      }
      for (const e of this.store.events(id)) subscriber.next(e);
      const live = this.live.get(id);
      if (TERMINAL_STATES.has(job.state) || !live) {
        this.finish(id, job.state, subscriber);
        return;
      }
      const sub = live.subject.subscribe({
        next: (e) => subscriber.next(e),
        complete: () => this.finish(id, this.store.get(id)?.state ?? JobState.JOB_STATE_FAILED, subscriber),
      });
      return () => sub.unsubscribe();
    });
  }

  /** Submit + Watch; unsubscribing before the result (client gone) cancels the job. */
  search(request: SearchRequest): Observable<SearchEvent> {
    const job = this.submit(request);
    return new Observable<SearchEvent>((subscriber) => {
      const sub = this.watch(job.id).subscribe(subscriber);
      return () => {
        sub.unsubscribe();
        const state = this.store.get(job.id)?.state;
        // A job left for a restart by a drain is not the client's to cancel.
        if (state !== undefined && !TERMINAL_STATES.has(state) && !this.draining) void this.cancel(job.id).catch(() => undefined);
      };
    });
  }

  /** Cancels a queued or running job; waits (bounded) until its in-flight worker calls stopped. */
  async cancel(id: string): Promise<Job> {
    const job = this.get(id);
    if (TERMINAL_STATES.has(job.state)) return job;
    const live = this.live.get(id);
    if (!live) {
      // Left for a restart by a drain: nothing runs it here.
      this.settle(id, JobState.JOB_STATE_CANCELLED, { code: 'CANCELLED', message: 'cancelled while the orchestrator was shutting down' });
      return this.get(id);
    }
    const q = this.queue.indexOf(id);
    if (q >= 0) {
      this.queue.splice(q, 1);
      live.controller.abort();
      this.settle(id, JobState.JOB_STATE_CANCELLED, { code: 'CANCELLED', message: 'cancelled before it started' });
      return this.get(id);
    }
    live.controller.abort();
    if (live.done) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        live.done,
        new Promise<void>((r) => { timer = setTimeout(r, this.options.cancelWaitMs ?? 30_000); }),
      ]);
      clearTimeout(timer);
    }
    return this.get(id);
  }

  /** A kept candidate's preview PNG, decoded when its round ran; undefined when none was kept. */
  preview(jobId: string, candidateId: string): Buffer | undefined {
    return this.previews.get(`${jobId}/${candidateId}`);
  }

  private savePreview(jobId: string, candidateId: string, png: Buffer): void {
    const key = `${jobId}/${candidateId}`;
    if (this.previews.has(key)) return;
    this.previews.set(key, png);
    this.previewBytes += png.length;
    for (const [k, v] of this.previews) {
      if (this.previewBytes <= PREVIEW_BYTES) break;
      this.previews.delete(k);
      this.previewBytes -= v.length;
    }
  }

  /** Jobs running now / waiting. */
  counts(): { running: number; queued: number } {
    return { running: this.running, queued: this.queue.length };
  }

  /** Cancels everything (shutdown) and waits for the running jobs to stop. */
  async close(): Promise<void> {
    this.closed = true;
    const ids = [...this.live.keys()];
    await Promise.all(ids.map((id) => this.cancel(id).catch(() => undefined)));
  }

  /**
   * Continues the jobs a previous process left QUEUED or RUNNING (after a crash or a drain): each
   * from its last committed round. Call once, when the runner can plan (the workers are ready).
   */
  resumeUnfinished(): string[] {
    const jobs = this.store.unfinished();
    // Those that were running first, then the queue in submission order.
    const ordered = [...jobs.filter((j) => j.state === JobState.JOB_STATE_RUNNING), ...jobs.filter((j) => j.state === JobState.JOB_STATE_QUEUED)];
    for (const job of ordered) {
      if (this.live.has(job.id)) continue;
      this.live.set(job.id, { subject: new Subject<SearchEvent>(), controller: new AbortController() });
      this.queue.push(job.id);
      const cp = this.store.checkpoint(job.id);
      this.options.log?.(`resuming job ${job.id} (${cp ? `after round ${cp.round}, ${cp.ledger.searchNfes} NFEs committed` : 'from the start'})`);
    }
    this.pump();
    return ordered.map((j) => j.id);
  }

  /**
   * Shutdown without losing work: no new jobs; queued jobs stay QUEUED; each running job stops right
   * after its next committed round (or, past `timeoutMs`, has its in-flight calls cancelled and
   * keeps its last committed round). Everything not finished continues when a process starts again.
   */
  async drain(timeoutMs: number): Promise<{ finished: number; left: number }> {
    this.closed = true;
    this.draining = true;
    for (const id of this.queue.splice(0)) this.leaveForRestart(id);
    const running = [...this.live.entries()].filter(([, l]) => l.done).map(([id, l]) => ({ id, done: l.done!, controller: l.controller }));
    let timer: NodeJS.Timeout | undefined;
    const all = Promise.all(running.map((r) => r.done));
    const timedOut = await Promise.race([
      all.then(() => false),
      new Promise<boolean>((r) => { timer = setTimeout(() => r(true), timeoutMs); }),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      for (const r of running) r.controller.abort();
      await Promise.race([all, new Promise((r) => { timer = setTimeout(r, this.options.cancelWaitMs ?? 30_000); })]);
      clearTimeout(timer);
    }
    const left = running.filter((r) => !TERMINAL_STATES.has(this.store.get(r.id)?.state ?? JobState.JOB_STATE_FAILED)).length;
    return { finished: running.length - left, left };
  }

  private pump(): void {
    while (this.running < this.options.maxRunningJobs && this.queue.length > 0) {
      const id = this.queue.shift()!;
      this.running++;
      const live = this.live.get(id)!;
      this.store.update(id, { state: JobState.JOB_STATE_RUNNING });
      live.done = this.execute(id, live)
        .catch((e) => this.options.log?.(`job ${id}: ${e instanceof Error ? e.message : String(e)}`)) // e.g. the store closed under it
        .finally(() => {
          this.running--;
          if (!this.draining) this.pump();
        });
    }
  }

  private async execute(id: string, live: Live): Promise<void> {
    const { request } = this.store.get(id)!;
    const signal = live.controller.signal;
    // A job with committed rounds continues after the last of them (same result as if never stopped).
    const checkpoint = this.store.checkpoint(id);
    const resume = checkpoint && {
      checkpoint,
      rounds: this.store.events(id).filter((e) => e.round).slice(0, checkpoint.rounds).map((e) => e.round!),
    };
    let result: Result;
    try {
      result = await this.runner.run(request!, {
        jobId: id,
        signal,
        resume,
        events: {
          onRound: (round: Round, cp?: SearchCheckpoint) => {
            if (signal.aborted) return;
            const event: SearchEvent = { jobId: id, round };
            // The round's event, progress and search state: committed together.
            this.store.transaction(() => {
              this.store.appendEvent(id, event);
              this.store.update(id, { roundsDone: this.store.get(id)!.roundsDone + 1, nfesSpent: round.nfesSpent });
              if (cp) this.store.saveCheckpoint(id, cp);
            });
            live.subject.next(event);
            if (this.draining) throw new DrainedError(id);
          },
          onPreviews: (_round: Round, previews: { id: string; png: Buffer }[]) => {
            for (const p of previews) this.savePreview(id, p.id, p.png);
          },
        },
      });
    } catch (e) {
      if (this.draining && (e instanceof DrainedError || signal.aborted)) {
        this.leaveForRestart(id);
        return;
      }
      const err = toJobError(e, signal, (m) => this.options.log?.(`job ${id}: ${m}`));
      this.settle(id, err.code === 'CANCELLED' ? JobState.JOB_STATE_CANCELLED : JobState.JOB_STATE_FAILED, err);
      return;
    }
    if (signal.aborted) {
      if (this.draining) return this.leaveForRestart(id);
      this.settle(id, JobState.JOB_STATE_CANCELLED, { code: 'CANCELLED', message: 'search cancelled' });
      return;
    }
    this.settle(id, JobState.JOB_STATE_SUCCEEDED, undefined, result);
  }

  /** Draining: the job keeps its state and committed rounds in the store; its watchers are told to come back. */
  private leaveForRestart(id: string): void {
    const live = this.live.get(id);
    this.live.delete(id);
    live?.subject.complete();
  }

  /** Ends the job: the result (if any), its event and the final state are committed together, then watchers hear. */
  private settle(id: string, state: JobState, error?: JobError, result?: Result): void {
    const last: SearchEvent | undefined = result && { jobId: id, result };
    this.store.transaction(() => {
      if (result) this.store.update(id, { result, nfesSpent: result.accounting?.searchNfes ?? this.store.get(id)!.nfesSpent });
      if (last) this.store.appendEvent(id, last);
      if (error) this.store.setError(id, error);
      this.store.update(id, { state, error: error?.message ?? '', finishedAt: this.now().toISOString() });
    });
    const live = this.live.get(id);
    this.live.delete(id);
    if (last) live?.subject.next(last);
    live?.subject.complete();
    for (const gone of this.store.prune(this.options.maxJobsKept)) this.live.delete(gone);
  }

  private finish(id: string, state: JobState, subscriber: { complete(): void; error(e: unknown): void }): void {
    if (state === JobState.JOB_STATE_SUCCEEDED) return subscriber.complete();
    if (!TERMINAL_STATES.has(state)) {
      // Left for a restart by a drain.
      return subscriber.error(errorFromJob({
        code: 'UNAVAILABLE', message: `the orchestrator is shutting down; job ${id} continues from its last committed round when it restarts (Watch it then)`,
      }));
    }
    const err = this.store.error(id) ?? { code: 'INTERNAL', message: 'job ended without a result' };
    subscriber.error(errorFromJob(err));
  }
}

// The job registry: Submit / Get / Watch / Cancel / List and the synchronous Search stream.
// Plain class (no framework); jobs.service.ts gives it to Nest.
//
// Alone (SQLite, the default): one process owns the store; jobs wait in an in-memory queue and a
// restarted process continues what its predecessor left unfinished.
// Shared (PostgreSQL, `shared` set): several replicas share the store, and a queue (BullMQ on Redis,
// job-queue.ts) dispatches the jobs. Submit writes the job and puts its id in the queue; the queue
// hands it to a replica with a free slot and holds it locked to that replica while it runs (the
// lease, renewed by BullMQ). That replica takes the job's next fencing token in the store and commits
// each round and the result only under it (fence(), in the same transaction), so a replica that lost
// the job (killed, paused, cut off past its lock: the queue gave the job to another) commits nothing;
// the other resumes it from its last committed round. Watch and Cancel work from any replica: Watch
// follows the job's events in the store (polling it), Cancel of a job running elsewhere is a flag in
// the store that the replica running it checks every `checkMs`.
import { randomUUID } from 'node:crypto';
import { Observable, Subject } from 'rxjs';
import {
  Job, JobState, Plan, Result, Round, SearchEvent, SearchRequest,
} from '../gen/noisesearch/search/v1/search';
import type { SearchCheckpoint } from '../search/checkpoint';
import { asSearchError } from '../api/public-errors';
import { SearchError, isSearchErrorCode } from '../search/errors';
import type { DispatchQueue, Outcome } from './job-queue';
import { JobError, JobStore, LeaseLostError, TERMINAL_STATES } from './job-store';
import type { SearchRunner } from './search-runner';

export interface JobRegistryOptions {
  maxRunningJobs: number;
  maxJobsKept: number;
  /** How long Cancel waits for a running job's in-flight worker calls to stop. */
  cancelWaitMs?: number;
  now?: () => Date;
  log?: (message: string) => void;
  /**
   * Shared store: this replica's name (the holder of its fencing tokens), the queue that dispatches
   * jobs, how often running jobs are checked for a cancel asked elsewhere (and for a token taken by
   * another replica), and how often every unfinished job is put in the queue again (a no-op for those
   * there; it brings back jobs the queue lost, e.g. a Redis restarted without persistence).
   */
  shared?: { owner: string; queue: DispatchQueue; checkMs: number; requeueMs?: number; watchPollMs?: number };
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
  /** Shared store: the fencing token this replica holds the job with. */
  token?: number;
  /** The lease was lost (another replica has the job): commit nothing, settle nothing. */
  lost?: boolean;
  /** Left for another run (drained): the queue gets it back. */
  left?: boolean;
}

export class JobRegistry {
  private readonly live = new Map<string, Live>();
  private readonly queue: string[] = [];
  private running = 0;
  private readonly now: () => Date;
  private closed = false;
  private draining = false;
  private timers: NodeJS.Timeout[] = [];
  /** Shared store: the queue's closing (it takes no new jobs from the moment a drain or close begins). */
  private queueClosed?: Promise<void>;
  /** Watchers following jobs through the store (shared mode): told to come back when this replica stops. */
  private readonly followers = new Set<{ error(e: unknown): void }>();

  constructor(
    private readonly runner: SearchRunner,
    private readonly options: JobRegistryOptions,
    private readonly store: JobStore,
  ) {
    this.now = options.now ?? (() => new Date());
    if (!!options.shared !== store.shared) throw new Error('a shared store (PostgreSQL) needs a queue, and a queue needs a shared store');
  }

  private get shared() {
    return this.options.shared;
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
    if (this.shared) {
      this.enqueue([id]);
    } else {
      this.live.set(id, { subject: new Subject<SearchEvent>(), controller: new AbortController() });
      this.queue.push(id);
      this.pump();
    }
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
      if (this.shared) return this.follow(id, subscriber);
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
    if (!live && this.shared) return this.cancelShared(id);
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

  /** A kept candidate's preview PNG, decoded when its round ran (from the store: any replica, after restarts); undefined when none was kept. */
  preview(jobId: string, candidateId: string): Buffer | undefined {
    return this.store.preview(jobId, candidateId);
  }

  /** Jobs running now (on this replica) / waiting (here; shared: anywhere). */
  counts(): { running: number; queued: number } {
    const queued = this.shared ? this.store.count(JobState.JOB_STATE_QUEUED) : this.queue.length;
    return { running: this.running, queued };
  }

  /** Cancels everything (shutdown) and waits for the running jobs to stop. */
  async close(): Promise<void> {
    this.closed = true;
    this.stopTimers();
    const closing = this.closeQueue();
    const ids = [...this.live.keys()];
    await Promise.all(ids.map((id) => this.cancel(id).catch(() => undefined)));
    await closing;
  }

  /**
   * Continues the jobs a previous process left QUEUED or RUNNING (after a crash or a drain): each
   * from its last committed round. Call once, when the runner can plan (the workers are ready).
   */
  resumeUnfinished(): string[] {
    if (this.shared) return this.startShared();
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
    const closing = this.closeQueue(); // no new jobs from the queue; its locks on the running ones are still renewed
    for (const f of this.followers) f.error(this.comeBack('this replica is shutting down'));
    for (const id of this.queue.splice(0)) this.leaveForRestart(id, false);
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
    this.stopTimers();
    await closing;
    const left = running.filter((r) => !TERMINAL_STATES.has(this.store.get(r.id)?.state ?? JobState.JOB_STATE_FAILED)).length;
    return { finished: running.length - left, left };
  }

  /** Alone: starts queued jobs while slots are free. */
  private pump(): void {
    while (this.running < this.options.maxRunningJobs && this.queue.length > 0) {
      const id = this.queue.shift()!;
      this.start(id, this.live.get(id)!);
    }
  }

  /** Marks the job RUNNING and runs it (live.done settles when it ended, was left for a restart, or lost). */
  private start(id: string, live: Live): void {
    this.running++;
    try {
      this.commit(id, live, () => this.store.update(id, { state: JobState.JOB_STATE_RUNNING }));
    } catch (e) {
      this.running--;
      this.dropLost(id, e);
      live.done = Promise.resolve();
      return;
    }
    live.done = this.execute(id, live)
      .catch((e) => this.options.log?.(`job ${id}: ${e instanceof Error ? e.message : String(e)}`)) // e.g. the store closed under it
      .finally(() => {
        this.running--;
        if (!this.shared && !this.draining) this.pump();
      });
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
    // A predecessor that died with work in flight after round `afterRound` spent that work's NFEs; this
    // run spends them again. They are charged as recovery NFEs once this run has done the same work:
    // the NFEs of round afterRound + 1 (or of the final solve, if every round was committed).
    const committed = checkpoint?.rounds ?? 0;
    const died = this.store.inFlight(id).afterRound;
    let lostAfter = died !== null ? committed : undefined;
    let lastNfes = Number(resume?.rounds[resume.rounds.length - 1]?.nfesSpent ?? 0);
    let roundsNow = committed;
    if (died !== null) this.options.log?.(`job ${id}: a previous run died after round ${committed} with work in flight: its NFEs are charged as recovery`);
    let result: Result;
    try {
      this.commit(id, live, () => this.store.markInFlight(id, committed));
      result = await this.runner.run(request!, {
        jobId: id,
        signal,
        resume,
        events: {
          onRound: (round: Round, cp?: SearchCheckpoint) => {
            if (signal.aborted) return;
            const event: SearchEvent = { jobId: id, round };
            const nfes = Number(round.nfesSpent);
            roundsNow++;
            // The round's event, progress, search state and in-flight marker: committed together (under the lease).
            this.commit(id, live, () => {
              this.store.appendEvent(id, event);
              this.store.update(id, { roundsDone: this.store.get(id)!.roundsDone + 1, nfesSpent: round.nfesSpent });
              if (cp) this.store.saveCheckpoint(id, cp);
              if (lostAfter !== undefined && roundsNow === lostAfter + 1) this.store.addLostNfes(id, nfes - lastNfes);
              this.store.markInFlight(id, roundsNow);
            });
            if (lostAfter !== undefined && roundsNow === lostAfter + 1) lostAfter = undefined;
            lastNfes = nfes;
            live.subject.next(event);
            if (this.draining) throw new DrainedError(id);
          },
          onPreviews: (_round: Round, previews: { id: string; png: Buffer }[]) => {
            if (signal.aborted) return;
            // Under the lease like the rounds: a replica that lost the job writes nothing. A preview is
            // never worth failing the job for: a lost lease shows at the next round's commit.
            try {
              this.commit(id, live, () => this.store.savePreviews(id, previews));
            } catch (e) {
              this.options.log?.(`job ${id}: previews not saved: ${e instanceof Error ? e.message : String(e)}`);
            }
          },
        },
      });
    } catch (e) {
      if (live.lost || e instanceof LeaseLostError) return this.dropLost(id, e);
      if (this.draining && (e instanceof DrainedError || signal.aborted)) {
        this.leaveForRestart(id, e instanceof DrainedError);
        return;
      }
      const err = toJobError(e, signal, (m) => this.options.log?.(`job ${id}: ${m}`));
      this.settle(id, err.code === 'CANCELLED' ? JobState.JOB_STATE_CANCELLED : JobState.JOB_STATE_FAILED, err);
      return;
    }
    if (live.lost) return this.dropLost(id, new LeaseLostError(id, live.token ?? 0));
    if (signal.aborted) {
      if (this.draining) return this.leaveForRestart(id, false);
      this.settle(id, JobState.JOB_STATE_CANCELLED, { code: 'CANCELLED', message: 'search cancelled' });
      return;
    }
    // Every round was committed when a predecessor died: what it lost was (part of) the final solve.
    if (lostAfter !== undefined) this.commit(id, live, () => this.store.addLostNfes(id, Number(result.accounting?.finalNfes ?? 0)));
    this.settle(id, JobState.JOB_STATE_SUCCEEDED, undefined, result);
  }

  /** Runs `fn` in one transaction; with a lease, only while this replica's token still holds the job. */
  private commit<T>(id: string, live: Live | undefined, fn: () => T): T {
    return this.store.transaction(() => {
      if (this.shared && live?.token !== undefined) this.store.fence(id, live.token);
      return fn();
    });
  }

  /** This replica lost the job's lease: it forgets the job (its owner now finishes it) and commits nothing. */
  private dropLost(id: string, e: unknown): void {
    const live = this.live.get(id);
    if (!live) return; // dropped already (the queue's lock, the token check and the refused commit each notice it)
    this.live.delete(id);
    live.lost = true;
    live.controller.abort();
    live.subject.complete();
    this.options.log?.(`job ${id}: lost its lease to another replica; nothing more is committed here (${e instanceof Error ? e.message : String(e)})`);
  }

  /**
   * Shared store: takes jobs from the queue from now on, puts every unfinished job in it (those of a
   * replica that died are there already: the queue gives them out again once their lock expired), and
   * checks the running ones for cancels asked elsewhere. Returns the unfinished jobs.
   */
  private startShared(): string[] {
    const shared = this.shared!;
    shared.queue.start((id) => this.runFromQueue(id), (ids) => this.lockLost(ids));
    const ids = this.requeueUnfinished();
    const check = setInterval(() => this.safely(() => this.checkLeases()), shared.checkMs);
    const requeue = setInterval(() => this.safely(() => { this.requeueUnfinished(); }), shared.requeueMs ?? 30_000);
    check.unref();
    requeue.unref();
    this.timers.push(check, requeue);
    return ids;
  }

  /** Every unfinished job into the queue (the queue keeps one entry per job id). */
  private requeueUnfinished(): string[] {
    const ids = this.store.unfinished().map((j) => j.id);
    this.enqueue(ids);
    return ids;
  }

  private enqueue(ids: string[]): void {
    // Not awaited (Submit answers at once): a failed add is logged, and the periodic requeue puts the job in again.
    this.shared!.queue.add(ids).catch((e) => this.options.log?.(`job queue: could not queue ${ids.length} job(s): ${e instanceof Error ? e.message : String(e)}`));
  }

  /**
   * The queue's processor: the queue gave this replica the job (and locks it here while this runs).
   * Takes the job's next fencing token, so that whoever ran it before commits nothing more, and runs
   * it from its last committed round. 'requeue' when it was left for another replica (a drain).
   */
  private async runFromQueue(id: string): Promise<Outcome> {
    if (this.closed) return 'requeue'; // taken as this replica began to shut down: another replica runs it
    const job = this.store.get(id);
    // Finished or cancelled while it waited in the queue (or queued again by the requeue): dropped.
    if (!job || TERMINAL_STATES.has(job.state)) return 'done';
    const token = this.store.takeLease(id, this.shared!.owner);
    if (token === undefined) return 'done';
    const live: Live = { subject: new Subject<SearchEvent>(), controller: new AbortController(), token };
    this.live.set(id, live);
    const cp = this.store.checkpoint(id);
    this.options.log?.(`took job ${id} (token ${token}; ${cp ? `after round ${cp.round}, ${cp.ledger.searchNfes} NFEs committed` : 'from the start'})`);
    if (this.store.leaseCheck(id, token)?.cancel) {
      this.settle(id, JobState.JOB_STATE_CANCELLED, { code: 'CANCELLED', message: 'search cancelled' });
      return 'done';
    }
    this.start(id, live);
    await live.done;
    return live.left ? 'requeue' : 'done';
  }

  /** The queue could not renew this replica's lock on these jobs: another replica gets (or has) them. */
  private lockLost(ids: string[]): void {
    for (const id of ids) {
      const live = this.live.get(id);
      if (live?.token !== undefined) this.dropLost(id, new LeaseLostError(id, live.token));
    }
  }

  private safely(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.options.log?.(`job store: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  /** Running jobs: still ours (else stop at once: another replica has it), and not cancelled elsewhere. */
  private checkLeases(): void {
    for (const [id, live] of [...this.live.entries()]) {
      if (live.token === undefined || !live.done) continue;
      const r = this.store.leaseCheck(id, live.token);
      if (!r) this.dropLost(id, new LeaseLostError(id, live.token));
      else if (r.cancel && !live.controller.signal.aborted) live.controller.abort(); // cancelled on another replica
    }
  }

  private stopTimers(): void {
    for (const t of this.timers.splice(0)) clearInterval(t);
  }

  private closeQueue(): Promise<void> {
    if (!this.shared) return Promise.resolve();
    this.queueClosed ??= this.shared.queue.close().catch((e) => this.options.log?.(`job queue: ${e instanceof Error ? e.message : String(e)}`));
    return this.queueClosed;
  }

  /** Cancel of a job this replica does not run: settle it if no replica runs it, else ask the one that does. */
  private async cancelShared(id: string): Promise<Job> {
    if (await this.shared!.queue.removeUnlocked(id)) {
      // Out of the queue (it was waiting, or not there): nobody runs it. Cancelled here, under a new token.
      const token = this.store.takeLease(id, this.shared!.owner);
      if (token !== undefined) {
        this.live.set(id, { subject: new Subject<SearchEvent>(), controller: new AbortController(), token });
        this.settle(id, JobState.JOB_STATE_CANCELLED, { code: 'CANCELLED', message: 'search cancelled' });
      }
      return this.get(id);
    }
    this.store.requestCancel(id);
    const t0 = Date.now();
    while (!TERMINAL_STATES.has(this.get(id).state) && Date.now() - t0 < (this.options.cancelWaitMs ?? 30_000)) {
      await new Promise((r) => setTimeout(r, 50));
    }
    return this.get(id);
  }

  /** Watch through the store (any replica): replays, then polls for new events until the job ends. */
  private follow(id: string, subscriber: { next(e: SearchEvent): void; complete(): void; error(e: unknown): void }): () => void {
    let sent = 0;
    let timer: NodeJS.Timeout | undefined;
    let stopped = false;
    const stop = () => {
      stopped = true;
      clearTimeout(timer);
      this.followers.delete(handle);
    };
    const handle = { error: (e: unknown) => { stop(); subscriber.error(e); } };
    this.followers.add(handle);
    const step = () => {
      if (stopped) return;
      try {
        const state = this.store.get(id)?.state ?? JobState.JOB_STATE_FAILED;
        const events = this.store.events(id, sent);
        sent += events.length;
        for (const e of events) subscriber.next(e);
        if (TERMINAL_STATES.has(state)) {
          stop();
          return this.finish(id, state, subscriber);
        }
      } catch (e) {
        stop();
        return subscriber.error(e instanceof SearchError ? e : errorFromJob({ code: 'UNAVAILABLE', message: `job store: ${e instanceof Error ? e.message : String(e)}` }));
      }
      timer = setTimeout(step, this.shared?.watchPollMs ?? 200);
    };
    step();
    return stop;
  }

  private comeBack(why: string): SearchError {
    return errorFromJob({ code: 'UNAVAILABLE', message: `${why}; the job goes on: Watch it again (on any replica)` });
  }

  /**
   * Draining: the job keeps its state and committed rounds in the store; its watchers are told to come
   * back. `clean`: it stopped right after a committed round (nothing in flight was lost); else the
   * in-flight marker stays and the next run charges the round again as recovery. Shared: the job goes
   * back to the queue (runFromQueue answers 'requeue'), so that another replica continues it at once.
   */
  private leaveForRestart(id: string, clean: boolean): void {
    const live = this.live.get(id);
    this.live.delete(id);
    if (live) live.left = true;
    try {
      if (clean) this.commit(id, live, () => this.store.markInFlight(id, null));
    } catch (e) {
      this.options.log?.(`job ${id}: ${e instanceof Error ? e.message : String(e)}`);
    }
    live?.subject.complete();
  }

  /** Ends the job: the result (if any), its event and the final state are committed together, then watchers hear. */
  private settle(id: string, state: JobState, error?: JobError, result?: Result): void {
    const live = this.live.get(id);
    let last: SearchEvent | undefined;
    try {
      this.commit(id, live, () => {
        // NFEs that runs which died mid-round spent: recovery, reported apart from the plan's.
        const lost = this.store.inFlight(id).lostNfes;
        const charged = result && lost > 0 && result.accounting ? {
          ...result,
          accounting: {
            ...result.accounting,
            recoveryNfes: String(Number(result.accounting.recoveryNfes) + lost),
            totalNfes: String(Number(result.accounting.totalNfes) + lost),
          },
        } : result;
        last = charged && { jobId: id, result: charged };
        if (charged) this.store.update(id, { result: charged, nfesSpent: charged.accounting?.searchNfes ?? this.store.get(id)!.nfesSpent });
        if (last) this.store.appendEvent(id, last);
        if (error) this.store.setError(id, error);
        this.store.update(id, { state, error: error?.message ?? '', finishedAt: this.now().toISOString() });
        this.store.markInFlight(id, null);
      });
    } catch (e) {
      if (e instanceof LeaseLostError) return this.dropLost(id, e);
      throw e;
    }
    this.live.delete(id);
    if (last) live?.subject.next(last);
    live?.subject.complete();
    for (const gone of this.store.prune(this.options.maxJobsKept)) this.live.delete(gone);
  }

  private finish(id: string, state: JobState, subscriber: { complete(): void; error(e: unknown): void }): void {
    if (state === JobState.JOB_STATE_SUCCEEDED) return subscriber.complete();
    if (!TERMINAL_STATES.has(state)) {
      // Left for a restart by a drain.
      return subscriber.error(this.shared ? this.comeBack(`job ${id} moved to another replica`) : errorFromJob({
        code: 'UNAVAILABLE', message: `the orchestrator is shutting down; job ${id} continues from its last committed round when it restarts (Watch it then)`,
      }));
    }
    const err = this.store.error(id) ?? { code: 'INTERNAL', message: 'job ended without a result' };
    subscriber.error(errorFromJob(err));
  }
}

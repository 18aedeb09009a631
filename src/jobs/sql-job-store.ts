// The JobStore of the service, on SQLite (embedded default: one file, better-sqlite3, WAL) or on
// PostgreSQL (NOISESEARCH_DB=postgres://…, shared by every orchestrator replica): one class, the same
// statements and the same migrations (migrations.ts) on both engines (sql.ts).
// Jobs, their requests and plans, every event, the search checkpoint of the last committed round,
// results and the dashboard's candidate previews (in the database on both engines); result PNGs by
// content hash: on disk beside a SQLite file (image-store.ts), in the database on PostgreSQL (every
// replica serves them). Writes that belong together go through transaction().
// Fencing (shared stores): the queue (job-queue.ts) hands a job to a replica, which takes the job's next
// fencing token here (takeLease) and commits each round only while the token is still the job's
// (fence(), in the round's transaction); a replica that was paused or partitioned past its lease, whose
// job the queue gave to another replica, commits nothing.
import Database from 'better-sqlite3';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Job, JobState, Plan, Result, SearchEvent, SearchRequest } from '../gen/noisesearch/search/v1/search';
import { decodeCheckpoint, encodeCheckpoint, type SearchCheckpoint } from '../search/checkpoint';
import type { CandidatePreview } from '../search/previews';
import { FileImageStore, MemoryImageStore, sha256Hex, type ImageStore } from './image-store';
import type { JobError, JobStore, ListFilter } from './job-store';
import { LeaseLostError, TERMINAL_STATES } from './job-store';
import { migrate } from './migrations';
import { PgSyncDb, SqliteDb, type SqlDb } from './sql';

export interface SqlJobStoreOptions {
  /** A SQLite file, ':memory:', or a postgres:// URL. */
  path: string;
  /** SQLite: result images go to <dataDir>/results/; default: the database file's folder. Unused for ':memory:' and PostgreSQL. */
  dataDir?: string;
  now?: () => Date;
  /** PostgreSQL: a session idle inside a transaction this long is ended by the server (see PgSyncDb); 0 = never. */
  idleInTransactionMs?: number;
}

interface JobRow {
  seq: number;
  id: string;
  state: number;
  request: Buffer;
  plan: Buffer | null;
  rounds_done: number;
  nfes_spent: string;
  error_code: string | null;
  error_message: string;
  created_at: string;
  finished_at: string;
}

const UNFINISHED = [JobState.JOB_STATE_QUEUED, JobState.JOB_STATE_RUNNING];

export const isPostgresUrl = (s: string) => /^postgres(ql)?:\/\//.test(s);

function algorithmOf(r: SearchRequest | undefined): string {
  return r?.random ? 'random' : r?.zeroOrder ? 'zero_order' : r?.paths ? 'paths' : '';
}

function kindOf(e: SearchEvent): 'plan' | 'round' | 'result' {
  if (e.plan) return 'plan';
  if (e.round) return 'round';
  if (e.result) return 'result';
  throw new Error('an event without plan, round or result');
}

/** PNG bytes in the database itself (PostgreSQL: reachable from every replica). */
export class DbImageStore implements ImageStore {
  constructor(private readonly db: SqlDb) {}
  put(png: Buffer): string {
    const sha = sha256Hex(png);
    this.db.run('INSERT INTO image_blobs (sha256, png) VALUES (?, ?) ON CONFLICT (sha256) DO NOTHING', [sha, png]);
    return sha;
  }
  get(sha256: string): Buffer {
    const row = this.db.get<{ png: Buffer }>('SELECT png FROM image_blobs WHERE sha256 = ?', [sha256]);
    if (!row) throw new Error(`no result image ${sha256}`);
    if (sha256Hex(row.png) !== sha256) throw new Error(`result image ${sha256} is corrupt in the database`);
    return Buffer.from(row.png);
  }
  remove(sha256: string): void {
    this.db.run('DELETE FROM image_blobs WHERE sha256 = ?', [sha256]);
  }
}

export class SqlJobStore implements JobStore {
  readonly db: SqlDb;
  readonly images: ImageStore;
  /** Schema versions before and after opening. */
  readonly migrated: { from: number; to: number };
  /** Several processes may share it (PostgreSQL): jobs come from the queue and commit under fencing tokens. */
  readonly shared: boolean;
  private readonly now: () => Date;

  constructor(opts: SqlJobStoreOptions) {
    this.now = opts.now ?? (() => new Date());
    if (isPostgresUrl(opts.path)) {
      this.db = new PgSyncDb(opts.path, undefined, opts.idleInTransactionMs ?? 0);
      this.shared = true;
      this.migrated = migrate(this.db);
      this.images = new DbImageStore(this.db);
      return;
    }
    const memory = opts.path === ':memory:';
    if (!memory) fs.mkdirSync(path.dirname(path.resolve(opts.path)), { recursive: true });
    const raw = new Database(opts.path);
    if (!memory) raw.pragma('journal_mode = WAL');
    raw.pragma('synchronous = FULL'); // a committed round survives power loss, not only a killed process
    raw.pragma('foreign_keys = ON');
    raw.pragma('busy_timeout = 5000');
    this.db = new SqliteDb(raw);
    this.shared = false;
    this.migrated = migrate(this.db);
    this.images = memory
      ? new MemoryImageStore()
      : new FileImageStore(path.join(opts.dataDir || path.dirname(path.resolve(opts.path)), 'results'));
  }

  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn);
  }

  create(job: Job): void {
    this.transaction(() => {
      this.db.run(`INSERT INTO jobs (id, state, client_id, algorithm, request, plan, rounds_done, nfes_spent, error_message, created_at, finished_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, [
        job.id, job.state, job.request?.clientId ?? '', algorithmOf(job.request),
        Buffer.from(SearchRequest.encode(job.request ?? SearchRequest.fromPartial({})).finish()),
        job.plan ? Buffer.from(Plan.encode(job.plan).finish()) : null,
        job.roundsDone, job.nfesSpent, job.error, job.createdAt, job.finishedAt,
      ]);
      if (job.result) this.writeResult(job.id, job.result);
    });
  }

  get(id: string): Job | undefined {
    const row = this.db.get<JobRow>('SELECT * FROM jobs WHERE id = ?', [id]);
    return row ? this.toJob(row, true) : undefined;
  }

  update(id: string, patch: Partial<Job>): Job {
    return this.transaction(() => {
      const before = this.get(id);
      if (!before) throw new Error(`no job ${id}`);
      const job = { ...before, ...patch };
      this.db.run('UPDATE jobs SET state = ?, plan = ?, rounds_done = ?, nfes_spent = ?, error_message = ?, finished_at = ? WHERE id = ?', [
        job.state, job.plan ? Buffer.from(Plan.encode(job.plan).finish()) : null, job.roundsDone, job.nfesSpent, job.error, job.finishedAt, id,
      ]);
      if (patch.result) this.writeResult(id, patch.result);
      return job;
    });
  }

  appendEvent(id: string, event: SearchEvent): void {
    const kind = kindOf(event);
    this.transaction(() => {
      const { next } = this.db.get<{ next: number }>('SELECT COALESCE(MAX(seq) + 1, 0) AS next FROM job_events WHERE job_id = ?', [id])!;
      // The result event's payload is the job's result (PNGs by hash); other events are stored whole.
      if (event.result) this.writeResult(id, event.result);
      this.db.run('INSERT INTO job_events (job_id, seq, kind, round, event) VALUES (?, ?, ?, ?, ?)', [
        id, Number(next), kind, event.round?.round ?? null, kind === 'result' ? null : Buffer.from(SearchEvent.encode(event).finish()),
      ]);
    });
  }

  events(id: string, from = 0): SearchEvent[] {
    if (!this.exists(id)) throw new Error(`no job ${id}`);
    const rows = this.db.all<{ kind: string; event: Buffer | null }>('SELECT kind, event FROM job_events WHERE job_id = ? AND seq >= ? ORDER BY seq', [id, from]);
    return rows.map((r) => (r.kind === 'result'
      ? { jobId: id, result: this.readResult(id) }
      : SearchEvent.decode(r.event!)));
  }

  setError(id: string, error: JobError): void {
    this.db.run('UPDATE jobs SET error_code = ?, error_message = ? WHERE id = ?', [error.code, error.message, id]);
  }

  error(id: string): JobError | undefined {
    const row = this.db.get<{ error_code: string | null; error_message: string }>('SELECT error_code, error_message FROM jobs WHERE id = ?', [id]);
    return row?.error_code ? { code: row.error_code, message: row.error_message } : undefined;
  }

  /** Newest first, without results (Get a job for its result). */
  list(filter: ListFilter): Job[] {
    const all = filter.state === JobState.JOB_STATE_UNSPECIFIED;
    const rows = this.db.all<JobRow>('SELECT * FROM jobs WHERE (? = 1 OR state = ?) ORDER BY seq DESC LIMIT ?', [all ? 1 : 0, filter.state, filter.limit]);
    return rows.map((r) => this.toJob(r, false));
  }

  count(state: JobState): number {
    return Number(this.db.get<{ n: number | string }>('SELECT COUNT(*) AS n FROM jobs WHERE state = ?', [state])!.n);
  }

  prune(keep: number): string[] {
    return this.transaction(() => {
      const terminal = [...TERMINAL_STATES];
      const finished = this.db.all<{ id: string }>(`SELECT id FROM jobs WHERE state IN (${terminal.map(() => '?').join(', ')}) ORDER BY seq`, terminal);
      const drop = finished.slice(0, Math.max(0, finished.length - keep)).map((r) => r.id);
      if (drop.length === 0) return [];
      const hashes = new Set<string>();
      for (const id of drop) {
        for (const r of this.db.all<{ sha256: string }>('SELECT sha256 FROM result_images WHERE job_id = ?', [id])) hashes.add(r.sha256);
        this.db.run('DELETE FROM jobs WHERE id = ?', [id]);
      }
      for (const h of hashes) if (!this.db.get('SELECT 1 AS used FROM result_images WHERE sha256 = ? LIMIT 1', [h])) this.images.remove(h);
      return drop;
    });
  }

  saveCheckpoint(id: string, checkpoint: SearchCheckpoint): void {
    this.db.run(`INSERT INTO job_checkpoints (job_id, round, rounds, state, updated_at) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (job_id) DO UPDATE SET round = excluded.round, rounds = excluded.rounds, state = excluded.state, updated_at = excluded.updated_at`,
    [id, checkpoint.round, checkpoint.rounds, encodeCheckpoint(checkpoint), this.now().toISOString()]);
  }

  checkpoint(id: string): SearchCheckpoint | undefined {
    const row = this.db.get<{ state: string }>('SELECT state FROM job_checkpoints WHERE job_id = ?', [id]);
    return row ? decodeCheckpoint(row.state) : undefined;
  }

  savePreviews(id: string, previews: CandidatePreview[]): void {
    this.transaction(() => {
      for (const p of previews) {
        this.db.run('INSERT INTO job_previews (job_id, candidate_id, png) VALUES (?, ?, ?) ON CONFLICT (job_id, candidate_id) DO NOTHING', [id, p.id, p.png]);
      }
    });
  }

  preview(id: string, candidateId: string): Buffer | undefined {
    const row = this.db.get<{ png: Buffer }>('SELECT png FROM job_previews WHERE job_id = ? AND candidate_id = ?', [id, candidateId]);
    return row && Buffer.from(row.png);
  }

  unfinished(): Job[] {
    const rows = this.db.all<JobRow>('SELECT * FROM jobs WHERE state IN (?, ?) ORDER BY seq', UNFINISHED);
    return rows.map((r) => this.toJob(r, false));
  }

  // --- the round in flight (accounting after a crash) ---

  markInFlight(id: string, afterRound: number | null): void {
    this.db.run('UPDATE jobs SET in_flight_after = ? WHERE id = ?', [afterRound, id]);
  }

  inFlight(id: string): { afterRound: number | null; lostNfes: number } {
    const r = this.db.get<{ in_flight_after: number | null; lost_nfes: number | string }>('SELECT in_flight_after, lost_nfes FROM jobs WHERE id = ?', [id]);
    return { afterRound: r?.in_flight_after ?? null, lostNfes: Number(r?.lost_nfes ?? 0) };
  }

  addLostNfes(id: string, nfes: number): void {
    this.db.run('UPDATE jobs SET lost_nfes = lost_nfes + ? WHERE id = ?', [nfes, id]);
  }

  // --- fencing tokens (the lease itself is the queue's lock, job-queue.ts) ---

  takeLease(id: string, owner: string): number | undefined {
    const r = this.db.get<{ lease_token: number | string }>('UPDATE jobs SET lease_owner = ?, lease_token = lease_token + 1 WHERE id = ? AND state IN (?, ?) RETURNING lease_token',
      [owner, id, ...UNFINISHED]);
    return r ? Number(r.lease_token) : undefined;
  }

  leaseCheck(id: string, token: number): { cancel: boolean } | undefined {
    const r = this.db.get<{ cancel_requested: number }>('SELECT cancel_requested FROM jobs WHERE id = ? AND lease_token = ?', [id, token]);
    return r ? { cancel: Number(r.cancel_requested) === 1 } : undefined;
  }

  /** In a transaction: throws LeaseLostError unless `token` is still the job's (locks the job's row until the commit). */
  fence(id: string, token: number): void {
    if (this.db.run('UPDATE jobs SET lease_token = lease_token WHERE id = ? AND lease_token = ?', [id, token]) !== 1) throw new LeaseLostError(id, token);
  }

  requestCancel(id: string): void {
    this.db.run('UPDATE jobs SET cancel_requested = 1 WHERE id = ?', [id]);
  }

  /** The last holder of the job and its token. */
  leaseOf(id: string): { owner: string | null; token: number } | undefined {
    const r = this.db.get<{ lease_owner: string | null; lease_token: number | string }>('SELECT lease_owner, lease_token FROM jobs WHERE id = ?', [id]);
    return r && { owner: r.lease_owner, token: Number(r.lease_token) };
  }

  close(): void {
    this.db.close();
  }

  private exists(id: string): boolean {
    return !!this.db.get('SELECT 1 AS found FROM jobs WHERE id = ?', [id]);
  }

  private toJob(row: JobRow, withResult: boolean): Job {
    return {
      id: row.id,
      state: row.state as JobState,
      request: SearchRequest.decode(row.request),
      plan: row.plan ? Plan.decode(row.plan) : undefined,
      roundsDone: row.rounds_done,
      nfesSpent: row.nfes_spent,
      result: withResult ? this.readResult(row.id) : undefined,
      error: row.error_message,
      createdAt: row.created_at,
      finishedAt: row.finished_at,
    };
  }

  private writeResult(id: string, result: Result): void {
    const images: { output: number; sha256: string; bytes: number }[] = [];
    const stripped: Result = {
      ...result,
      outputs: result.outputs.map((o, i) => {
        if (o.png.length > 0) images.push({ output: i, sha256: this.images.put(Buffer.from(o.png)), bytes: o.png.length });
        return { ...o, png: Buffer.alloc(0) };
      }),
    };
    const a = result.accounting;
    this.db.run(`INSERT INTO job_results (job_id, result, search_nfes, final_nfes, recovery_nfes, total_nfes) VALUES (?, ?, ?, ?, ?, ?)
      ON CONFLICT (job_id) DO UPDATE SET result = excluded.result, search_nfes = excluded.search_nfes, final_nfes = excluded.final_nfes,
        recovery_nfes = excluded.recovery_nfes, total_nfes = excluded.total_nfes`, [
      id, Buffer.from(Result.encode(stripped).finish()),
      Number(a?.searchNfes ?? 0), Number(a?.finalNfes ?? 0), Number(a?.recoveryNfes ?? 0), Number(a?.totalNfes ?? 0),
    ]);
    this.db.run('DELETE FROM result_images WHERE job_id = ?', [id]);
    for (const im of images) this.db.run('INSERT INTO result_images (job_id, output, sha256, bytes) VALUES (?, ?, ?, ?)', [id, im.output, im.sha256, im.bytes]);
  }

  private readResult(id: string): Result | undefined {
    const row = this.db.get<{ result: Buffer }>('SELECT result FROM job_results WHERE job_id = ?', [id]);
    if (!row) return undefined;
    const result = Result.decode(row.result);
    for (const im of this.db.all<{ output: number; sha256: string }>('SELECT output, sha256 FROM result_images WHERE job_id = ?', [id])) {
      result.outputs[im.output].png = this.images.get(im.sha256);
    }
    return result;
  }
}

// The JobStore of the service: one SQLite file (better-sqlite3, synchronous, WAL), migrated on open.
// Jobs, their requests and plans, every event, the search checkpoint of the last committed round,
// and results; result PNGs live on disk by content hash (image-store.ts), the database holds the
// reference, and Get gets the bytes back. Writes that belong together go through transaction().
import Database from 'better-sqlite3';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Job, JobState, Plan, Result, SearchEvent, SearchRequest } from '../gen/noisesearch/search/v1/search';
import { decodeCheckpoint, encodeCheckpoint, type SearchCheckpoint } from '../search/checkpoint';
import { FileImageStore, MemoryImageStore, type ImageStore } from './image-store';
import type { JobError, JobStore, ListFilter } from './job-store';
import { TERMINAL_STATES } from './job-store';
import { migrate } from './migrations';

export interface SqliteJobStoreOptions {
  /** Database file, or ':memory:'. */
  path: string;
  /** Result images go to <dataDir>/results/; default: the database file's folder. Unused for ':memory:'. */
  dataDir?: string;
  now?: () => Date;
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

function algorithmOf(r: SearchRequest | undefined): string {
  return r?.random ? 'random' : r?.zeroOrder ? 'zero_order' : r?.paths ? 'paths' : '';
}

function kindOf(e: SearchEvent): 'plan' | 'round' | 'result' {
  if (e.plan) return 'plan';
  if (e.round) return 'round';
  if (e.result) return 'result';
  throw new Error('an event without plan, round or result');
}

export class SqliteJobStore implements JobStore {
  readonly db: Database.Database;
  readonly images: ImageStore;
  /** Schema versions before and after opening. */
  readonly migrated: { from: number; to: number };
  private readonly now: () => Date;

  constructor(opts: SqliteJobStoreOptions) {
    this.now = opts.now ?? (() => new Date());
    const memory = opts.path === ':memory:';
    if (!memory) fs.mkdirSync(path.dirname(path.resolve(opts.path)), { recursive: true });
    this.db = new Database(opts.path);
    if (!memory) this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL'); // a committed round survives power loss, not only a killed process
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    this.migrated = migrate(this.db);
    this.images = memory
      ? new MemoryImageStore()
      : new FileImageStore(path.join(opts.dataDir || path.dirname(path.resolve(opts.path)), 'results'));
  }

  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  create(job: Job): void {
    this.transaction(() => {
      this.db.prepare(`INSERT INTO jobs (id, state, client_id, algorithm, request, plan, rounds_done, nfes_spent, error_message, created_at, finished_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(
        job.id, job.state, job.request?.clientId ?? '', algorithmOf(job.request),
        Buffer.from(SearchRequest.encode(job.request ?? SearchRequest.fromPartial({})).finish()),
        job.plan ? Buffer.from(Plan.encode(job.plan).finish()) : null,
        job.roundsDone, job.nfesSpent, job.error, job.createdAt, job.finishedAt,
      );
      if (job.result) this.writeResult(job.id, job.result);
    });
  }

  get(id: string): Job | undefined {
    const row = this.db.prepare('SELECT * FROM jobs WHERE id = ?').get(id) as JobRow | undefined;
    return row ? this.toJob(row, true) : undefined;
  }

  update(id: string, patch: Partial<Job>): Job {
    return this.transaction(() => {
      const before = this.get(id);
      if (!before) throw new Error(`no job ${id}`);
      const job = { ...before, ...patch };
      this.db.prepare(`UPDATE jobs SET state = ?, plan = ?, rounds_done = ?, nfes_spent = ?, error_message = ?, finished_at = ? WHERE id = ?`).run(
        job.state, job.plan ? Buffer.from(Plan.encode(job.plan).finish()) : null, job.roundsDone, job.nfesSpent, job.error, job.finishedAt, id,
      );
      if (patch.result) this.writeResult(id, patch.result);
      return job;
    });
  }

  appendEvent(id: string, event: SearchEvent): void {
    const kind = kindOf(event);
    this.transaction(() => {
      const { next } = this.db.prepare('SELECT COALESCE(MAX(seq) + 1, 0) AS next FROM job_events WHERE job_id = ?').get(id) as { next: number };
      // The result event's payload is the job's result (PNGs by hash); other events are stored whole.
      if (event.result) this.writeResult(id, event.result);
      this.db.prepare('INSERT INTO job_events (job_id, seq, kind, round, event) VALUES (?, ?, ?, ?, ?)').run(
        id, next, kind, event.round?.round ?? null, kind === 'result' ? null : Buffer.from(SearchEvent.encode(event).finish()),
      );
    });
  }

  events(id: string): SearchEvent[] {
    if (!this.exists(id)) throw new Error(`no job ${id}`);
    const rows = this.db.prepare('SELECT kind, event FROM job_events WHERE job_id = ? ORDER BY seq').all(id) as { kind: string; event: Buffer | null }[];
    return rows.map((r) => (r.kind === 'result'
      ? { jobId: id, result: this.readResult(id) }
      : SearchEvent.decode(r.event!)));
  }

  setError(id: string, error: JobError): void {
    this.db.prepare('UPDATE jobs SET error_code = ?, error_message = ? WHERE id = ?').run(error.code, error.message, id);
  }

  error(id: string): JobError | undefined {
    const row = this.db.prepare('SELECT error_code, error_message FROM jobs WHERE id = ?').get(id) as { error_code: string | null; error_message: string } | undefined;
    return row?.error_code ? { code: row.error_code, message: row.error_message } : undefined;
  }

  /** Newest first, without results (Get a job for its result). */
  list(filter: ListFilter): Job[] {
    const all = filter.state === JobState.JOB_STATE_UNSPECIFIED;
    const rows = this.db.prepare(`SELECT * FROM jobs WHERE (? OR state = ?) ORDER BY seq DESC LIMIT ?`)
      .all(all ? 1 : 0, filter.state, filter.limit) as JobRow[];
    return rows.map((r) => this.toJob(r, false));
  }

  prune(keep: number): string[] {
    return this.transaction(() => {
      const terminal = [...TERMINAL_STATES];
      const finished = this.db.prepare(`SELECT id FROM jobs WHERE state IN (${terminal.map(() => '?').join(', ')}) ORDER BY seq`)
        .all(...terminal) as { id: string }[];
      const drop = finished.slice(0, Math.max(0, finished.length - keep)).map((r) => r.id);
      if (drop.length === 0) return [];
      const hashes = new Set<string>();
      const imagesOf = this.db.prepare('SELECT sha256 FROM result_images WHERE job_id = ?');
      const del = this.db.prepare('DELETE FROM jobs WHERE id = ?');
      for (const id of drop) {
        for (const r of imagesOf.all(id) as { sha256: string }[]) hashes.add(r.sha256);
        del.run(id);
      }
      const used = this.db.prepare('SELECT 1 FROM result_images WHERE sha256 = ? LIMIT 1');
      for (const h of hashes) if (!used.get(h)) this.images.remove(h);
      return drop;
    });
  }

  saveCheckpoint(id: string, checkpoint: SearchCheckpoint): void {
    this.db.prepare(`INSERT INTO job_checkpoints (job_id, round, rounds, state, updated_at) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (job_id) DO UPDATE SET round = excluded.round, rounds = excluded.rounds, state = excluded.state, updated_at = excluded.updated_at`)
      .run(id, checkpoint.round, checkpoint.rounds, encodeCheckpoint(checkpoint), this.now().toISOString());
  }

  checkpoint(id: string): SearchCheckpoint | undefined {
    const row = this.db.prepare('SELECT state FROM job_checkpoints WHERE job_id = ?').get(id) as { state: string } | undefined;
    return row ? decodeCheckpoint(row.state) : undefined;
  }

  unfinished(): Job[] {
    const rows = this.db.prepare(`SELECT * FROM jobs WHERE state IN (?, ?) ORDER BY seq`).all(...UNFINISHED) as JobRow[];
    return rows.map((r) => this.toJob(r, false));
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  private exists(id: string): boolean {
    return !!this.db.prepare('SELECT 1 FROM jobs WHERE id = ?').get(id);
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
    this.db.prepare(`INSERT INTO job_results (job_id, result, search_nfes, final_nfes, recovery_nfes, total_nfes) VALUES (?, ?, ?, ?, ?, ?)
      ON CONFLICT (job_id) DO UPDATE SET result = excluded.result, search_nfes = excluded.search_nfes, final_nfes = excluded.final_nfes,
        recovery_nfes = excluded.recovery_nfes, total_nfes = excluded.total_nfes`).run(
      id, Buffer.from(Result.encode(stripped).finish()),
      Number(a?.searchNfes ?? 0), Number(a?.finalNfes ?? 0), Number(a?.recoveryNfes ?? 0), Number(a?.totalNfes ?? 0),
    );
    this.db.prepare('DELETE FROM result_images WHERE job_id = ?').run(id);
    const ins = this.db.prepare('INSERT INTO result_images (job_id, output, sha256, bytes) VALUES (?, ?, ?, ?)');
    for (const im of images) ins.run(id, im.output, im.sha256, im.bytes);
  }

  private readResult(id: string): Result | undefined {
    const row = this.db.prepare('SELECT result FROM job_results WHERE job_id = ?').get(id) as { result: Buffer } | undefined;
    if (!row) return undefined;
    const result = Result.decode(row.result);
    for (const im of this.db.prepare('SELECT output, sha256 FROM result_images WHERE job_id = ?').all(id) as { output: number; sha256: string }[]) {
      result.outputs[im.output].png = this.images.get(im.sha256);
    }
    return result;
  }
}

// The two database engines behind the one job store (sql-job-store.ts), as one small synchronous
// interface: SQLite (better-sqlite3, embedded, the default) and PostgreSQL (the npm `pg` client,
// shared by several orchestrator replicas). Statements use `?` placeholders (rewritten to $1.. for
// PostgreSQL) and the SQL both engines speak.
//
// Why synchronous for PostgreSQL too: the JobStore interface is synchronous (better-sqlite3 is), and
// its callers (the job registry, the API controller, the admin service) rely on that. Rather than
// make every caller async, PgSyncDb runs a `pg` Client on a worker thread and waits for each answer
// with Atomics.wait, as better-sqlite3 waits for SQLite: one statement at a time, in order, on one
// connection (so BEGIN ... COMMIT spans the statements between them). A loopback round trip is
// ~0.1-0.3 ms; a statement never waits longer than `statementTimeoutMs`.
import Database from 'better-sqlite3';
import { MessageChannel, receiveMessageOnPort, Worker } from 'node:worker_threads';

export type Row = Record<string, unknown>;
export type Param = string | number | bigint | boolean | null | Buffer | Uint8Array;

export interface SqlDb {
  readonly dialect: 'sqlite' | 'postgres';
  all<T = Row>(sql: string, params?: Param[]): T[];
  get<T = Row>(sql: string, params?: Param[]): T | undefined;
  /** Rows changed. */
  run(sql: string, params?: Param[]): number;
  exec(sql: string): void;
  /** Runs `fn` atomically (nested calls become savepoints). */
  transaction<T>(fn: () => T): T;
  close(): void;
  readonly open: boolean;
}

export class SqliteDb implements SqlDb {
  readonly dialect = 'sqlite' as const;
  constructor(readonly raw: Database.Database) {}
  all<T>(sql: string, params: Param[] = []): T[] { return this.raw.prepare(sql).all(...params) as T[]; }
  get<T>(sql: string, params: Param[] = []): T | undefined { return this.raw.prepare(sql).get(...params) as T | undefined; }
  run(sql: string, params: Param[] = []): number { return this.raw.prepare(sql).run(...params).changes; }
  exec(sql: string): void { this.raw.exec(sql); }
  transaction<T>(fn: () => T): T { return this.raw.transaction(fn)(); }
  close(): void { if (this.raw.open) this.raw.close(); }
  get open(): boolean { return this.raw.open; }
}

/** A PostgreSQL error, with its SQLSTATE. */
export class PgError extends Error {
  constructor(message: string, readonly code?: string) {
    super(message);
    this.name = 'PgError';
  }
}

// The worker thread: one pg Client, one statement at a time; each answer posted with its statement's id,
// then the flag (a counter) raised.
// A lost connection is opened again before the next statement, but never inside a transaction: there
// every statement fails until the transaction ends (nothing of it commits).
const PG_THREAD = `
const { workerData } = require('node:worker_threads');
const { Client } = require(workerData.pgPath);
const flag = new Int32Array(workerData.flag);
const port = workerData.port;
let client;
let broken;
let ready;
const connect = () => {
  broken = undefined;
  client = new Client({
    connectionString: workerData.url, statement_timeout: workerData.statementTimeoutMs, application_name: 'noisesearch',
    ...(workerData.idleInTransactionMs ? { idle_in_transaction_session_timeout: workerData.idleInTransactionMs } : {}),
  });
  const mine = client;
  client.on('error', (e) => { if (client === mine) broken = e; }); // a replaced client's late error is not the new one's
  ready = client.connect().catch((e) => { broken = e; });
};
connect();
// A second answer to one statement would do no harm: the caller takes only the answer with its id.
const reply = (m, a) => {
  port.postMessage({ id: m.id, ...a });
  Atomics.add(flag, 0, 1);
  Atomics.notify(flag, 0);
};
// Whatever goes wrong is answered: an error that escaped would end this thread, and the process with it.
port.on('message', (m) => handle(m).catch((e) => reply(m, { error: { message: String((e && e.message) || e), code: e && e.code } })));
const handle = async (m) => {
  if (m.close) { await client.end().catch(() => undefined); reply(m, { rows: [], rowCount: 0 }); port.close(); return; }
  await ready;
  if (broken && !m.inTx) { client.end().catch(() => undefined); connect(); await ready; }
  if (broken) return reply(m, { error: { message: String(broken.message || broken), code: broken.code } });
  try {
    const params = (m.params || []).map((p) => (p instanceof Uint8Array ? Buffer.from(p.buffer, p.byteOffset, p.byteLength) : p));
    const r = await client.query(m.params ? { text: m.sql, values: params } : m.sql);
    const last = Array.isArray(r) ? r[r.length - 1] : r;
    reply(m, { rows: last.rows || [], rowCount: last.rowCount || 0 });
  } catch (e) {
    if (client._queryable === false || /Connection terminated|ECONNRESET|ECONNREFUSED/.test(String(e.message))) broken = broken || e;
    reply(m, { error: { message: String(e.message || e), code: e.code } });
  }
};
`;

/** `?` → `$1, $2, ...` (outside quoted strings). */
export function toPgPlaceholders(sql: string): string {
  let n = 0;
  let quoted = false;
  let out = '';
  for (const ch of sql) {
    if (ch === "'") quoted = !quoted;
    out += ch === '?' && !quoted ? `$${++n}` : ch;
  }
  return out;
}

const toBuffer = (v: unknown): unknown => (v instanceof Uint8Array && !Buffer.isBuffer(v) ? Buffer.from(v.buffer, v.byteOffset, v.byteLength) : v);

export class PgSyncDb implements SqlDb {
  readonly dialect = 'postgres' as const;
  private readonly worker: Worker;
  private readonly port: MessageChannel['port1'];
  private readonly flag = new Int32Array(new SharedArrayBuffer(4));
  private depth = 0;
  private closed = false;

  /**
   * `idleInTransactionMs`: the server ends this session (rolling back, releasing its row locks) when it
   * sits that long inside a transaction. Ours send their statements back to back, so only a process
   * that was paused (SIGSTOP) or cut off mid-transaction ever does; without this, its lock on a job's
   * row (fence()) would block every other replica that takes the job.
   */
  constructor(readonly url: string, private readonly statementTimeoutMs = 30_000, idleInTransactionMs = 0,
    private readonly answerTimeoutMs = statementTimeoutMs + 30_000) {
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    this.worker = new Worker(PG_THREAD, {
      eval: true,
      workerData: { url, pgPath: require.resolve('pg'), flag: this.flag.buffer, port: port2, statementTimeoutMs, idleInTransactionMs },
      transferList: [port2],
    });
    this.worker.unref();
    // The thread ended (it should not): every later statement fails at once, naming why, instead of the process dying.
    this.worker.on('error', (e) => { this.threadError = e; });
    this.worker.on('exit', (code) => { this.threadError ??= new Error(`the PostgreSQL thread exited (${code})`); });
  }

  private threadError?: Error;
  private lastId = 0;

  /** The answer to one statement, matched by id: an answer to a statement given up on earlier is dropped. */
  private await(id: number, sql: string, timeoutMs = this.answerTimeoutMs): { rows: Row[]; rowCount: number; error?: { message: string; code?: string } } {
    // The connection itself may take a while the first time; a statement is bounded by statement_timeout.
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const raised = Atomics.load(this.flag, 0);
      for (let m = receiveMessageOnPort(this.port); m; m = receiveMessageOnPort(this.port)) {
        if ((m.message as { id: number }).id === id) return m.message;
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new PgError(`PostgreSQL did not answer within ${timeoutMs} ms: ${sql.slice(0, 80)}`);
      // Woken by the next answer; re-checked every 50 ms as well, so that nothing waits on a wake-up it missed.
      Atomics.wait(this.flag, 0, raised, Math.min(left, 50));
    }
  }

  private call(sql: string, params?: Param[]): { rows: Row[]; rowCount: number } {
    if (this.closed) throw new PgError('the database connection is closed');
    if (this.threadError) throw new PgError(`PostgreSQL thread: ${this.threadError.message}`);
    const id = ++this.lastId;
    this.port.postMessage({ id, sql: params ? toPgPlaceholders(sql) : sql, params, inTx: this.depth > 0 });
    const msg = this.await(id, sql);
    if (msg.error) throw new PgError(`PostgreSQL: ${msg.error.message}`, msg.error.code);
    for (const row of msg.rows) for (const k of Object.keys(row)) row[k] = toBuffer(row[k]);
    return msg;
  }

  all<T>(sql: string, params: Param[] = []): T[] { return this.call(sql, params).rows as T[]; }
  get<T>(sql: string, params: Param[] = []): T | undefined { return this.call(sql, params).rows[0] as T | undefined; }
  run(sql: string, params: Param[] = []): number { return this.call(sql, params).rowCount; }
  exec(sql: string): void { this.call(sql); }

  transaction<T>(fn: () => T): T {
    const depth = this.depth;
    this.exec(depth === 0 ? 'BEGIN' : `SAVEPOINT sp${depth}`); // BEGIN may reconnect; nothing after it may
    this.depth++;
    try {
      const out = fn();
      this.exec(depth === 0 ? 'COMMIT' : `RELEASE SAVEPOINT sp${depth}`);
      return out;
    } catch (e) {
      try { this.exec(depth === 0 ? 'ROLLBACK' : `ROLLBACK TO SAVEPOINT sp${depth}`); } catch { /* the connection is gone: so is the transaction */ }
      throw e;
    } finally {
      this.depth--;
    }
  }

  get open(): boolean { return !this.closed; }

  close(): void {
    if (this.closed) return;
    const id = ++this.lastId;
    this.port.postMessage({ id, close: true });
    try { this.await(id, 'close', 5_000); } catch { /* closing anyway */ }
    this.closed = true;
    this.port.close();
    void this.worker.terminate();
  }
}

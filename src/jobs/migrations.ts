// The database schema, as ordered migration steps. `schema_version` records each step applied;
// on open, the steps above the recorded version run in order, each in its own transaction.
// Never edit a released step: add the next one.
import type { Database } from 'better-sqlite3';

export interface Migration {
  version: number;
  name: string;
  up: (db: Database) => void;
}

export const MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: 'jobs, events, checkpoints, results, result images',
    up: (db) => db.exec(`
      CREATE TABLE jobs (
        seq           INTEGER PRIMARY KEY AUTOINCREMENT,  -- submission order
        id            TEXT NOT NULL UNIQUE,
        state         INTEGER NOT NULL,                   -- JobState
        client_id     TEXT NOT NULL,
        algorithm     TEXT NOT NULL,
        request       BLOB NOT NULL,                      -- SearchRequest (protobuf)
        plan          BLOB,                               -- Plan (protobuf)
        rounds_done   INTEGER NOT NULL DEFAULT 0,
        nfes_spent    TEXT NOT NULL DEFAULT '0',
        error_code    TEXT,
        error_message TEXT NOT NULL DEFAULT '',
        created_at    TEXT NOT NULL,
        finished_at   TEXT NOT NULL DEFAULT ''
      );
      CREATE INDEX jobs_by_state ON jobs (state, seq);

      -- Every event of a job in order: the plan, one per round, the result. The result event has no
      -- payload here: it is the job's row in job_results.
      CREATE TABLE job_events (
        job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        seq    INTEGER NOT NULL,
        kind   TEXT NOT NULL CHECK (kind IN ('plan', 'round', 'result')),
        round  INTEGER,
        event  BLOB,                                      -- SearchEvent (protobuf)
        PRIMARY KEY (job_id, seq)
      );

      -- The search state after the last committed round (written with that round's event).
      CREATE TABLE job_checkpoints (
        job_id     TEXT PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
        round      INTEGER NOT NULL,
        rounds     INTEGER NOT NULL,
        state      TEXT NOT NULL,                         -- JSON (src/search/checkpoint.ts)
        updated_at TEXT NOT NULL
      );

      CREATE TABLE job_results (
        job_id        TEXT PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
        result        BLOB NOT NULL,                      -- Result (protobuf), each output's PNG taken out
        search_nfes   INTEGER NOT NULL,
        final_nfes    INTEGER NOT NULL,
        recovery_nfes INTEGER NOT NULL,
        total_nfes    INTEGER NOT NULL
      );

      -- Output PNGs by content: the file is <data dir>/results/<sha256>.png.
      CREATE TABLE result_images (
        job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        output INTEGER NOT NULL,                          -- index in Result.outputs
        sha256 TEXT NOT NULL,
        bytes  INTEGER NOT NULL,
        PRIMARY KEY (job_id, output)
      );
      CREATE INDEX result_images_by_hash ON result_images (sha256);
    `),
  },
];

/** The version the database is at (0 = empty). */
export function schemaVersion(db: Database): number {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_version (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TEXT NOT NULL
  )`);
  return (db.prepare('SELECT COALESCE(MAX(version), 0) AS v FROM schema_version').get() as { v: number }).v;
}

/** Brings the database up to the last step; refuses a database written by a newer version. */
export function migrate(db: Database, migrations: Migration[] = MIGRATIONS, now = () => new Date()): { from: number; to: number } {
  for (let i = 0; i < migrations.length; i++) {
    if (migrations[i].version !== i + 1) throw new Error(`migration ${i} has version ${migrations[i].version}, expected ${i + 1}`);
  }
  const from = schemaVersion(db);
  const latest = migrations.length;
  if (from > latest) {
    throw new Error(`the database is at schema version ${from}, newer than this build knows (${latest}): use a newer orchestrator`);
  }
  const record = db.prepare('INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)');
  for (const m of migrations.slice(from)) {
    db.transaction(() => {
      m.up(db);
      record.run(m.version, m.name, now().toISOString());
    })();
  }
  return { from, to: latest };
}

// The job store on both engines: every behaviour on SQLite (':memory:' and a file) and on a real
// PostgreSQL server (a throwaway cluster on loopback, testing/pg-cluster.ts), the same migrations on both.
import Database from 'better-sqlite3';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Job, JobState, Plan, Result, SearchRequest } from '../gen/noisesearch/search/v1/search';
import { CHECKPOINT_VERSION, type SearchCheckpoint } from '../search/checkpoint';
import { sha256Hex } from './image-store';
import { LeaseLostError } from './job-store';
import { MIGRATIONS, migrate, schemaVersion, type Migration } from './migrations';
import { SqliteDb } from './sql';
import { SqlJobStore, SqlJobStore as SqliteJobStore } from './sql-job-store';
import { startPgCluster, type PgCluster } from './testing/pg-cluster';

jest.setTimeout(60_000);
let pg: PgCluster;
let dbs = 0;
beforeAll(async () => { pg = await startPgCluster(); });
afterAll(() => pg?.stop());

let dir: string;
beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ns-store-')); });
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const png = (s: string) => Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47]), Buffer.from(s)]);

function job(id: string, state = JobState.JOB_STATE_QUEUED): Job {
  return {
    id, state,
    request: SearchRequest.fromPartial({ zeroOrder: { n: 2, k: 3 }, seed: '7', clientId: 'c1' }),
    plan: Plan.fromPartial({ algorithm: 'zero_order', n: 2, k: 3, searchNfes: '36', rounds: 3 }),
    roundsDone: 0, nfesSpent: '0', result: undefined, error: '', createdAt: '2026-01-01T00:00:00.000Z', finishedAt: '',
  };
}

function result(...pngs: Buffer[]): Result {
  return Result.fromPartial({
    outputs: pngs.map((p, i) => ({ rank: i + 1, png: p, recipe: { seed: { seed: String(i), shape: ['1', '32', '32'] } } })),
    accounting: { searchNfes: '36', finalNfes: '12', totalNfes: '48', recoveryNfes: '0', plannedSearchNfes: '36' },
  });
}

const checkpoint = (round: number): SearchCheckpoint => ({
  version: CHECKPOINT_VERSION, algorithm: 'zero_order', round, rounds: round, plannedSearchNfes: 36, workerCalls: 4 * round,
  ledger: { searchNfes: 12 * round, verifierCalls: 2 * round, recoveryNfes: 0 }, state: { pivot: { handle: 'v3' }, scores: [0.5, -Infinity] },
});

describe('migrations', () => {
  it('bring an empty database to the last version, recorded in schema_version; reopening is a no-op', () => {
    const file = path.join(dir, 'a.db');
    const s1 = new SqliteJobStore({ path: file });
    expect(s1.migrated).toEqual({ from: 0, to: MIGRATIONS.length });
    expect(s1.db.all('SELECT version, name FROM schema_version')).toEqual(MIGRATIONS.map((m) => ({ version: m.version, name: m.name })));
    s1.close();
    const s2 = new SqliteJobStore({ path: file });
    expect(s2.migrated).toEqual({ from: MIGRATIONS.length, to: MIGRATIONS.length });
    s2.close();
  });

  it('apply only the steps above the recorded version, in order, each atomically', () => {
    const db = new SqliteDb(new Database(':memory:'));
    const applied: number[] = [];
    const steps: Migration[] = [
      { version: 1, name: 'one', up: (d) => { applied.push(1); d.exec('CREATE TABLE t (a INTEGER)'); } },
      { version: 2, name: 'two', up: (d) => { applied.push(2); d.exec('ALTER TABLE t ADD COLUMN b TEXT'); } },
    ];
    expect(migrate(db, steps.slice(0, 1))).toEqual({ from: 0, to: 1 });
    expect(migrate(db, steps)).toEqual({ from: 1, to: 2 });
    expect(applied).toEqual([1, 2]);
    // A failing step leaves nothing behind: neither its changes nor its version.
    const broken: Migration = { version: 3, name: 'broken', up: (d) => { d.exec('CREATE TABLE u (a)'); throw new Error('boom'); } };
    expect(() => migrate(db, [...steps, broken])).toThrow('boom');
    expect(schemaVersion(db)).toBe(2);
    expect(db.get("SELECT name FROM sqlite_master WHERE name = 'u'")).toBeUndefined();
    // Out of order steps are a programming error.
    expect(() => migrate(db, [steps[1]])).toThrow(/version/);
  });

  it('refuse a database from a newer version', () => {
    const file = path.join(dir, 'new.db');
    new SqliteJobStore({ path: file }).close();
    const db = new Database(file);
    db.prepare('INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)').run(99, 'future', 'x');
    db.close();
    expect(() => new SqliteJobStore({ path: file })).toThrow(/schema version 99, newer/);
  });
});

describe('SqliteJobStore', () => {
  it('keeps jobs, events, checkpoints and results across a reopen; PNGs on disk by hash, rehydrated on read', () => {
    const file = path.join(dir, 'jobs.db');
    const s = new SqliteJobStore({ path: file });
    s.create(job('job-a'));
    s.appendEvent('job-a', { jobId: 'job-a', plan: job('job-a').plan });
    s.transaction(() => {
      s.appendEvent('job-a', { jobId: 'job-a', round: { round: 1, nfesSpent: '12', sigma: 0, bestScores: [], kept: ['r1.c0'], candidates: [], note: 'x', verifierCalls: '0', verifierSeconds: 0 } });
      s.update('job-a', { state: JobState.JOB_STATE_RUNNING, roundsDone: 1, nfesSpent: '12' });
      s.saveCheckpoint('job-a', checkpoint(1));
    });
    const r = result(png('one'), png('two'));
    s.transaction(() => {
      s.update('job-a', { result: r, state: JobState.JOB_STATE_SUCCEEDED, finishedAt: '2026-01-01T00:01:00.000Z' });
      s.appendEvent('job-a', { jobId: 'job-a', result: r });
    });
    s.close();

    const again = new SqliteJobStore({ path: file });
    const j = again.get('job-a')!;
    expect(j).toMatchObject({ state: JobState.JOB_STATE_SUCCEEDED, roundsDone: 1, nfesSpent: '12', finishedAt: '2026-01-01T00:01:00.000Z' });
    expect(j.request).toEqual(job('job-a').request);
    expect(j.plan).toEqual(job('job-a').plan);
    expect(j.result).toEqual(r);
    expect(again.events('job-a').map((e) => (e.plan ? 'plan' : e.round ? 'round' : 'result'))).toEqual(['plan', 'round', 'result']);
    expect(again.events('job-a')[2].result).toEqual(r);
    const cp = again.checkpoint('job-a')!;
    expect(cp).toEqual(checkpoint(1));
    // The database holds hashes, the files hold the bytes.
    const blob = again.db.get<{ result: Buffer }>('SELECT result FROM job_results')!.result;
    expect(blob.includes(png('one'))).toBe(false);
    for (const p of [png('one'), png('two')]) {
      expect(fs.readFileSync(path.join(dir, 'results', `${sha256Hex(p)}.png`))).toEqual(p);
    }
    again.close();
  });

  it('keeps dashboard previews across a reopen of the file', () => {
    const file = path.join(dir, 'previews.db');
    const s = new SqliteJobStore({ path: file });
    s.create(job('job-a'));
    s.savePreviews('job-a', [{ id: 'r1.c0', png: png('thumb') }]);
    s.close();
    const again = new SqliteJobStore({ path: file });
    expect(again.preview('job-a', 'r1.c0')).toEqual(png('thumb'));
    again.close();
  });

  it('stores a PNG returned by two jobs once, and deletes it when the last job referring to it is pruned', () => {
    const s = new SqliteJobStore({ path: path.join(dir, 'p.db'), dataDir: path.join(dir, 'data') });
    const shared = png('shared');
    for (const id of ['job-1', 'job-2', 'job-3']) {
      s.create(job(id));
      s.update(id, { state: JobState.JOB_STATE_SUCCEEDED, result: result(shared, png(id)) });
    }
    const files = () => fs.readdirSync(path.join(dir, 'data', 'results')).sort();
    expect(files()).toHaveLength(4);
    expect(s.prune(2)).toEqual(['job-1']);
    expect(files()).toHaveLength(3); // job-1's own image went, the shared one stays
    expect(fs.existsSync(path.join(dir, 'data', 'results', `${sha256Hex(shared)}.png`))).toBe(true);
    expect(s.prune(0)).toEqual(['job-2', 'job-3']);
    expect(files()).toEqual([]);
    expect(s.get('job-1')).toBeUndefined();
    s.close();
  });

});

const ENGINES: [string, () => SqlJobStore][] = [
  ['SQLite', () => new SqlJobStore({ path: ':memory:' })],
  ['PostgreSQL', () => new SqlJobStore({ path: pg.createDatabase(`t${++dbs}`) })],
];

describe.each(ENGINES)('the job store on %s', (_engine, open) => {
  it('keeps jobs, events, checkpoints and results; PNGs by hash, rehydrated on read', () => {
    const s = open();
    s.create(job('job-a'));
    s.appendEvent('job-a', { jobId: 'job-a', plan: job('job-a').plan });
    s.transaction(() => {
      s.appendEvent('job-a', { jobId: 'job-a', round: { round: 1, nfesSpent: '12', sigma: 0, bestScores: [], kept: ['r1.c0'], candidates: [], note: 'x', verifierCalls: '0', verifierSeconds: 0 } });
      s.update('job-a', { state: JobState.JOB_STATE_RUNNING, roundsDone: 1, nfesSpent: '12' });
      s.saveCheckpoint('job-a', checkpoint(1));
    });
    const r = result(png('one'), png('two'));
    s.transaction(() => {
      s.update('job-a', { result: r, state: JobState.JOB_STATE_SUCCEEDED, finishedAt: '2026-01-01T00:01:00.000Z' });
      s.appendEvent('job-a', { jobId: 'job-a', result: r });
    });
    const j = s.get('job-a')!;
    expect(j).toMatchObject({ state: JobState.JOB_STATE_SUCCEEDED, roundsDone: 1, nfesSpent: '12', finishedAt: '2026-01-01T00:01:00.000Z' });
    expect(j.request).toEqual(job('job-a').request);
    expect(j.plan).toEqual(job('job-a').plan);
    expect(j.result).toEqual(r);
    expect(s.events('job-a').map((e) => (e.plan ? 'plan' : e.round ? 'round' : 'result'))).toEqual(['plan', 'round', 'result']);
    expect(s.events('job-a', 1).map((e) => (e.plan ? 'plan' : e.round ? 'round' : 'result'))).toEqual(['round', 'result']);
    expect(s.events('job-a')[2].result).toEqual(r);
    expect(s.checkpoint('job-a')).toEqual(checkpoint(1));
    const blob = s.db.get<{ result: Buffer }>('SELECT result FROM job_results')!.result;
    expect(blob.includes(png('one'))).toBe(false);
    s.close();
  });

  it('stores a PNG returned by two jobs once, and deletes it when the last job referring to it is pruned', () => {
    const s = open();
    const shared = png('shared');
    for (const id of ['job-1', 'job-2', 'job-3']) {
      s.create(job(id));
      s.update(id, { state: JobState.JOB_STATE_SUCCEEDED, result: result(shared, png(id)) });
    }
    expect(s.prune(2)).toEqual(['job-1']);
    expect(s.get('job-2')!.result!.outputs[0].png).toEqual(shared);
    expect(() => s.images.get(sha256Hex(png('job-1')))).toThrow();
    expect(s.prune(0)).toEqual(['job-2', 'job-3']);
    expect(() => s.images.get(sha256Hex(shared))).toThrow();
    expect(s.get('job-1')).toBeUndefined();
    s.close();
  });

  it('lists newest first with a state filter and a limit, without results; unfinished() oldest first', () => {
    const s = open();
    s.create(job('j1', JobState.JOB_STATE_RUNNING));
    s.create(job('j2', JobState.JOB_STATE_SUCCEEDED));
    s.update('j2', { result: result(png('x')) });
    s.create(job('j3', JobState.JOB_STATE_QUEUED));
    expect(s.list({ state: JobState.JOB_STATE_UNSPECIFIED, limit: 10 }).map((j) => j.id)).toEqual(['j3', 'j2', 'j1']);
    expect(s.list({ state: JobState.JOB_STATE_UNSPECIFIED, limit: 2 }).map((j) => j.id)).toEqual(['j3', 'j2']);
    expect(s.list({ state: JobState.JOB_STATE_SUCCEEDED, limit: 10 }).map((j) => [j.id, j.result])).toEqual([['j2', undefined]]);
    expect(s.get('j2')!.result!.outputs[0].png).toEqual(png('x'));
    expect(s.unfinished().map((j) => j.id)).toEqual(['j1', 'j3']);
    expect([s.count(JobState.JOB_STATE_QUEUED), s.count(JobState.JOB_STATE_FAILED)]).toEqual([1, 0]);
    s.close();
  });

  it('rolls a failed transaction back entirely', () => {
    const s = open();
    s.create(job('j'));
    expect(() => s.transaction(() => {
      s.appendEvent('j', { jobId: 'j', round: { round: 1, nfesSpent: '12', sigma: 0, bestScores: [], kept: [], candidates: [], note: '', verifierCalls: '0', verifierSeconds: 0 } });
      s.saveCheckpoint('j', checkpoint(1));
      s.update('j', { roundsDone: 1 });
      throw new Error('crash between writes');
    })).toThrow('crash');
    expect(s.events('j')).toEqual([]);
    expect(s.checkpoint('j')).toBeUndefined();
    expect(s.get('j')!.roundsDone).toBe(0);
    s.close();
  });

  it('keeps errors, replaces the checkpoint, and keeps an empty PNG (png not asked for) out of the image store', () => {
    const s = open();
    s.create(job('j'));
    s.saveCheckpoint('j', checkpoint(1));
    s.saveCheckpoint('j', checkpoint(2));
    expect(s.checkpoint('j')!.round).toBe(2);
    s.setError('j', { code: 'RESOURCE_EXHAUSTED', message: 'memory cap' });
    expect(s.error('j')).toEqual({ code: 'RESOURCE_EXHAUSTED', message: 'memory cap' });
    s.update('j', { result: result(Buffer.alloc(0)) });
    expect(s.get('j')!.result!.outputs[0].png).toHaveLength(0);
    expect(Number(s.db.get<{ n: number }>('SELECT COUNT(*) AS n FROM result_images')!.n)).toBe(0);
    expect(() => s.events('nope')).toThrow(/no job/);
    s.close();
  });

  it('fencing tokens: each take fences off the holder before; a fenced-off holder commits nothing', () => {
    const a = open();
    // A second connection to the same database (PostgreSQL: another replica); SQLite :memory: is one process.
    const b = a.shared ? new SqlJobStore({ path: (a.db as unknown as { url: string }).url }) : a;
    a.create(job('j1'));
    expect(a.takeLease('j1', 'A')).toBe(1);
    expect(a.leaseCheck('j1', 1)).toEqual({ cancel: false });
    b.requestCancel('j1');
    expect(a.leaseCheck('j1', 1)).toEqual({ cancel: true });
    // The queue gave the job to B (A was paused past its lock): B takes the next token.
    expect(b.takeLease('j1', 'B')).toBe(2);
    expect(a.leaseCheck('j1', 1)).toBeUndefined();
    expect(b.leaseOf('j1')).toEqual({ owner: 'B', token: 2 });
    // A wakes up and tries to commit a round: refused, and nothing of the transaction stays.
    const round = { round: 1, nfesSpent: '12', sigma: 0, bestScores: [], kept: [], candidates: [], note: '', verifierCalls: '0', verifierSeconds: 0 };
    expect(() => a.transaction(() => {
      a.appendEvent('j1', { jobId: 'j1', round });
      a.saveCheckpoint('j1', checkpoint(1));
      a.fence('j1', 1);
    })).toThrow(LeaseLostError);
    expect(b.events('j1')).toEqual([]);
    expect(b.checkpoint('j1')).toBeUndefined();
    // The holder commits.
    b.transaction(() => { b.fence('j1', 2); b.appendEvent('j1', { jobId: 'j1', round }); });
    expect(a.events('j1')).toHaveLength(1);
    // A finished job is never taken again; an unknown one neither.
    a.update('j1', { state: JobState.JOB_STATE_SUCCEEDED });
    expect(a.takeLease('j1', 'A')).toBeUndefined();
    expect(a.takeLease('nope', 'A')).toBeUndefined();
    if (b !== a) b.close();
    a.close();
  });

  it("dashboard previews: read back byte for byte, a candidate's first one stays, gone with their job", () => {
    const s = open();
    s.create(job('j'));
    s.create(job('k'));
    const every = Buffer.from(Array.from({ length: 256 }, (_, i) => i)); // every byte value survives BLOB / BYTEA
    s.savePreviews('j', [{ id: 'r1.c0', png: every }, { id: 'r1.c1', png: png('b') }]);
    s.savePreviews('k', [{ id: 'r1.c0', png: png('k') }]);
    expect(s.preview('j', 'r1.c0')).toEqual(every);
    expect(s.preview('j', 'r1.c1')).toEqual(png('b'));
    expect(s.preview('k', 'r1.c0')).toEqual(png('k'));
    // A round run again (a resume) saves its candidates again: nothing changes, nothing fails.
    s.savePreviews('j', [{ id: 'r1.c0', png: png('again') }, { id: 'r2.c0', png: png('c') }]);
    expect(s.preview('j', 'r1.c0')).toEqual(every);
    expect(s.preview('j', 'r2.c0')).toEqual(png('c'));
    expect(s.preview('j', 'r9.c9')).toBeUndefined();
    expect(s.preview('nobody', 'r1.c0')).toBeUndefined();
    // Retention deletes the job's row; its previews go with it (ON DELETE CASCADE), the other job's stay.
    s.update('j', { state: JobState.JOB_STATE_SUCCEEDED });
    expect(s.prune(0)).toEqual(['j']);
    expect(s.preview('j', 'r1.c0')).toBeUndefined();
    expect(s.db.all('SELECT job_id, candidate_id FROM job_previews')).toEqual([{ job_id: 'k', candidate_id: 'r1.c0' }]);
    s.close();
  });

  it('previews written by a replica that lost its lease commit nothing', () => {
    const a = open();
    const b = a.shared ? new SqlJobStore({ path: (a.db as unknown as { url: string }).url }) : a;
    a.create(job('j1'));
    expect(a.takeLease('j1', 'A')).toBe(1);
    // The queue gave the job to B (A's lock expired): B takes the next token.
    expect(b.takeLease('j1', 'B')).toBe(2);
    // A's commit, as the registry makes it (the fence in the same transaction), after the takeover.
    expect(() => a.transaction(() => {
      a.savePreviews('j1', [{ id: 'r1.c0', png: png('stale') }]);
      a.fence('j1', 1);
    })).toThrow(LeaseLostError);
    expect(b.preview('j1', 'r1.c0')).toBeUndefined();
    b.transaction(() => { b.fence('j1', 2); b.savePreviews('j1', [{ id: 'r1.c0', png: png('holder') }]); });
    expect(a.preview('j1', 'r1.c0')).toEqual(png('holder'));
    if (b !== a) b.close();
    a.close();
  });

  it('the round in flight and the NFEs lost with it', () => {
    const s = open();
    s.create(job('j'));
    expect(s.inFlight('j')).toEqual({ afterRound: null, lostNfes: 0 });
    s.markInFlight('j', 2);
    s.addLostNfes('j', 12);
    s.addLostNfes('j', 5);
    expect(s.inFlight('j')).toEqual({ afterRound: 2, lostNfes: 17 });
    s.markInFlight('j', null);
    expect(s.inFlight('j').afterRound).toBeNull();
    s.close();
  });
});

describe('PostgreSQL specifics', () => {
  it('replicas opening one database together migrate it once', () => {
    const url = pg.createDatabase(`t${++dbs}`);
    const stores = [new SqlJobStore({ path: url }), new SqlJobStore({ path: url })];
    expect(stores.map((s) => s.migrated.to)).toEqual([MIGRATIONS.length, MIGRATIONS.length]);
    expect(stores[1].migrated.from).toBe(MIGRATIONS.length);
    expect(stores[0].db.all('SELECT version FROM schema_version ORDER BY version').map((r) => Number(r.version))).toEqual(MIGRATIONS.map((m) => m.version));
    for (const s of stores) s.close();
  });

  it('a server restart: the transaction it cut commits nothing, the next statement reconnects', () => {
    const s = new SqlJobStore({ path: pg.createDatabase(`t${++dbs}`) });
    s.create(job('j'));
    const round = { round: 1, nfesSpent: '12', sigma: 0, bestScores: [], kept: [], candidates: [], note: '', verifierCalls: '0', verifierSeconds: 0 };
    expect(() => s.transaction(() => {
      s.appendEvent('j', { jobId: 'j', round });
      pg.restart();
      s.saveCheckpoint('j', checkpoint(1));
    })).toThrow(/PostgreSQL/);
    expect(s.events('j')).toEqual([]);
    expect(s.checkpoint('j')).toBeUndefined();
    s.appendEvent('j', { jobId: 'j', round });
    expect(s.events('j')).toHaveLength(1);
    s.close();
  });

  it('a replica paused inside a round\'s transaction (holding the job\'s row lock) does not block the next holder: the server ends its session', () => {
    const url = pg.createDatabase(`t${++dbs}`);
    const a = new SqlJobStore({ path: url, idleInTransactionMs: 300 });
    const b = new SqlJobStore({ path: url });
    a.create(job('j'));
    expect(a.takeLease('j', 'A')).toBe(1);
    const round = { round: 1, nfesSpent: '12', sigma: 0, bestScores: [], kept: [], candidates: [], note: '', verifierCalls: '0', verifierSeconds: 0 };
    let taken: number | undefined;
    expect(() => a.transaction(() => {
      a.fence('j', 1); // locks the row until A commits
      a.appendEvent('j', { jobId: 'j', round });
      // A stops here (idle in its transaction) while B takes the job: B waits on A's row lock until the
      // server ends A's session; A's transaction is rolled back and its next statement fails.
      taken = b.takeLease('j', 'B');
      a.saveCheckpoint('j', checkpoint(1));
    })).toThrow(/PostgreSQL/);
    expect(taken).toBe(2);
    expect(b.events('j')).toEqual([]);
    expect(b.checkpoint('j')).toBeUndefined();
    // A's next transaction reconnects and is fenced off.
    expect(() => a.transaction(() => a.fence('j', 1))).toThrow(LeaseLostError);
    a.close();
    b.close();
  });

  it('names a database it cannot reach', () => {
    expect(() => new SqlJobStore({ path: `postgres://postgres@127.0.0.1:${pg.port}/no_such_db` })).toThrow(/no_such_db/);
  });
});

// The synchronous PostgreSQL connection (PgSyncDb) against a real, throwaway PostgreSQL cluster.
import { PgSyncDb } from './sql';
import { pgBin, startPgCluster, type PgCluster } from './testing/pg-cluster';

const maybe = pgBin() ? describe : describe.skip; // skipped only where Debian's postgresql is not installed (setup.sh installs it)

maybe('PgSyncDb', () => {
  let pg: PgCluster;
  beforeAll(async () => { pg = await startPgCluster(); }, 60_000);
  afterAll(() => pg?.stop());

  it('an answer that comes after its statement was given up on is dropped, never taken for the next statement', () => {
    // The late answer comes 0.1 s after the 1 s wait gives up, so the next statement, queued behind it, still has
    // 0.9 s of its own 1 s (a loaded CI machine took more than the 0.2 s an earlier 0.6 s / 0.4 s pair left).
    const db = new PgSyncDb(pg.createDatabase('late'), 30_000, 0, 1000);
    expect(() => db.get('SELECT pg_sleep(1.1) AS slept')).toThrow(/did not answer within 1000 ms/);
    // The late answer (slept) arrives while these wait; each gets its own.
    expect(db.get<{ x: number }>('SELECT 2 AS x')).toEqual({ x: 2 });
    expect(db.get<{ y: string }>('SELECT ? AS y', ['three'])).toEqual({ y: 'three' });
    for (let i = 0; i < 50; i++) expect(db.get<{ i: number }>('SELECT ?::int AS i', [i])).toEqual({ i });
    db.close();
  });
});

// The BullMQ semantics the replicas rely on, against a real redis-server started by the test: one
// entry per job id, a job that no replica runs can be taken out (a running one cannot), a drained job
// goes back to wait at once, and a job whose replica stopped renewing its lock (killed, paused) is
// given to another replica, however often that happens (never failed for stalling).
import { Queue } from 'bullmq';
import { BullJobQueue, isRedisUrl, type Outcome } from './job-queue';
import { startRedis, type RedisServer } from './testing/redis-server';

let redis: RedisServer;
beforeAll(async () => { redis = await startRedis(); }, 30_000);
afterAll(() => redis?.stop());

const until = async (cond: () => boolean, ms = 20_000) => {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
};

/** A replica's queue that records the jobs it was given; each run waits until `finish(id)` is called. */
function replica(name: string, lockMs = 1_000) {
  const q = new BullJobQueue({ url: redis.url, name, concurrency: 2, lockMs });
  const got: string[] = [];
  const lost: string[] = [];
  const pending = new Map<string, (o: Outcome) => void>();
  q.start((id) => { got.push(id); return new Promise<Outcome>((r) => pending.set(id, r)); }, (ids) => lost.push(...ids));
  return {
    q, got, lost,
    finish: (id: string, o: Outcome = 'done') => { const r = pending.get(id)!; pending.delete(id); r(o); },
    /** As if the process were killed: nothing renews its locks any more; its runs never return. */
    kill: () => (q as unknown as { worker: { close(force: boolean): Promise<void> } }).worker.close(true),
  };
}

describe('BullJobQueue (BullMQ on a real redis-server)', () => {
  it('accepts redis:// URLs only', () => {
    expect(isRedisUrl('redis://127.0.0.1:6379')).toBe(true);
    expect(isRedisUrl('postgres://x')).toBe(false);
    expect(() => new BullJobQueue({ url: 'localhost:6379', concurrency: 1, lockMs: 1000 })).toThrow(/redis:\/\//);
  });

  it('one entry per job id; a waiting job can be taken out, a running one cannot; done removes it; requeue gives it out again', async () => {
    const producer = new BullJobQueue({ url: redis.url, name: 'basics', concurrency: 1, lockMs: 1000 });
    const raw = new Queue('basics', { connection: { url: redis.url } });
    await producer.add(['j1', 'j1', 'j2']);
    await producer.add(['j1']);
    expect((await raw.getJobCounts('waiting')).waiting).toBe(2);
    expect(await producer.removeUnlocked('j2')).toBe(true); // waiting: out
    const r = replica('basics');
    await until(() => r.got.includes('j1'));
    expect(await producer.removeUnlocked('j1')).toBe(false); // running: locked by r
    r.finish('j1', 'requeue');
    await until(() => r.got.filter((id) => id === 'j1').length === 2); // back to wait, and out again
    r.finish('j1', 'done');
    const t0 = Date.now();
    while ((await raw.getJobState('j1')) !== 'unknown' && Date.now() - t0 < 10_000) await new Promise((x) => setTimeout(x, 20));
    expect(await raw.getJobState('j1')).toBe('unknown'); // completed jobs leave Redis
    expect(r.got).not.toContain('j2');
    await Promise.all([r.q.close(), producer.close(), raw.close()]);
  }, 30_000);

  it('a job whose replica stopped renewing its lock goes to another replica, stall after stall (never failed)', async () => {
    const producer = new BullJobQueue({ url: redis.url, name: 'stalls', concurrency: 1, lockMs: 500 });
    await producer.add(['s1']);
    const a = replica('stalls', 500);
    await until(() => a.got.includes('s1'));
    const b = replica('stalls', 500);
    await a.kill();
    await until(() => b.got.includes('s1'));
    const c = replica('stalls', 500);
    await b.kill(); // the second stall of the same job: BullMQ's default (maxStalledCount 1) would fail it here
    await until(() => c.got.includes('s1'));
    c.finish('s1');
    await Promise.all([a.q.close(), b.q.close(), c.q.close(), producer.close()]);
  }, 60_000);
});

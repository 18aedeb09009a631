import * as grpc from '@grpc/grpc-js';
import { loadConfig } from '../config/config';
import { isWorkerFault, pickWorker, WorkerPool, type PooledWorker } from './worker-pool';
import { WorkerCallError, WorkerRpc } from './worker-rpc';

describe('WorkerPool.lease', () => {
  it('hands out the least-leased worker and takes leases back once', () => {
    const pool = new WorkerPool(loadConfig({}), { log() {}, warn() {} });
    const a = { rpc: { address: 'a' } as WorkerRpc, leases: 0 };
    const b = { rpc: { address: 'b' } as WorkerRpc, leases: 0 };
    pool.workers.push(a, b);
    const l1 = pool.lease();
    const l2 = pool.lease();
    expect([l1.rpc.address, l2.rpc.address].sort()).toEqual(['a', 'b']);
    l1.release();
    l1.release();
    expect(a.leases + b.leases).toBe(1);
    expect(pool.lease().rpc.address).toBe(l1.rpc.address);
  });

  it('refuses when there is no worker', () => {
    expect(() => new WorkerPool(loadConfig({})).lease()).toThrow(/no worker/);
  });
});

describe('WorkerPool.recover', () => {
  const unavailable = new WorkerCallError('denoise', grpc.status.UNAVAILABLE, 'Connection dropped', 'a');
  const rpc = (address: string, serving: boolean) => ({ address, isServing: async () => serving, waitForReady: async () => { throw new Error('down'); } }) as unknown as WorkerRpc;

  it('moves a lease to another configured worker that serves, on a worker fault only', async () => {
    const pool = new WorkerPool(loadConfig({}), { log() {}, warn() {} });
    const a = { rpc: rpc('a', false), leases: 0 };
    const b = { rpc: rpc('b', true), leases: 0 };
    pool.workers.push(a, b);
    const lease = pool.lease();
    expect(lease.rpc.address).toBe('a');
    expect(await pool.recover(lease, new WorkerCallError('score', grpc.status.INVALID_ARGUMENT, 'bad', 'a'))).toBeUndefined();
    const moved = await pool.recover(lease, unavailable);
    expect(moved?.address).toBe('b');
    expect(lease.rpc.address).toBe('b');
    expect([a.leases, b.leases]).toEqual([0, 1]);
    lease.release();
    expect(b.leases).toBe(0);
  });

  it('gives up when no configured worker comes back', async () => {
    const pool = new WorkerPool(loadConfig({}, { workerStartTimeoutMs: 10 }), { log() {}, warn() {} });
    pool.workers.push({ rpc: rpc('a', false), leases: 0 });
    expect(await pool.recover(pool.lease(), unavailable)).toBeUndefined();
  });

  it('counts UNAVAILABLE (and an unasked CANCELLED) as a worker fault, request errors not', () => {
    expect(isWorkerFault(unavailable)).toBe(true);
    // Seen when a worker is killed mid-call (the connection reset): not a cancel of ours.
    expect(isWorkerFault(new WorkerCallError('initialNoises', grpc.status.CANCELLED, 'CANCELLED', 'a'))).toBe(true);
    expect(isWorkerFault(new WorkerCallError('score', grpc.status.RESOURCE_EXHAUSTED, 'cap', 'a'))).toBe(false);
    expect(isWorkerFault(new Error('x'))).toBe(false);
  });
});

describe('pickWorker (routing policy)', () => {
  const w = (address: string, o: Partial<PooledWorker> = {}): PooledWorker => ({ rpc: { address } as WorkerRpc, leases: 0, ...o });
  const pick = (...ws: PooledWorker[]) => pickWorker(ws)?.rpc.address;

  it('fills a partly filled micro-batch first, the fullest of them', () => {
    expect(pick(w('idle', { maxBatch: 16, queuedRows: 0 }), w('partial', { maxBatch: 16, queuedRows: 5, leases: 3 }))).toBe('partial');
    expect(pick(w('p5', { maxBatch: 16, queuedRows: 5 }), w('p12', { maxBatch: 16, queuedRows: 12 }), w('p20', { maxBatch: 16, queuedRows: 20 }))).toBe('p12');
  });

  it('else spreads: fewest queued rows, then fewest searches, then least memory', () => {
    expect(pick(w('full', { maxBatch: 16, queuedRows: 32 }), w('idle', { maxBatch: 16, queuedRows: 0, leases: 4 }))).toBe('idle');
    expect(pick(w('a', { leases: 2 }), w('b', { leases: 1 }))).toBe('b');
    expect(pick(w('a', { memoryUsedBytes: 9 }), w('b', { memoryUsedBytes: 3 }))).toBe('b');
  });

  it('never picks a worker that is not serving or left the DNS answer', () => {
    expect(pick(w('down', { serving: false }), w('gone', { gone: true }), w('up', { leases: 9 }))).toBe('up');
    expect(pick(w('down', { serving: false }))).toBeUndefined();
  });

  it('lease() follows it', () => {
    const pool = new WorkerPool(loadConfig({}), { log() {}, warn() {} });
    pool.workers.push(w('down', { serving: false }), w('up', { leases: 5 }));
    expect(pool.lease().rpc.address).toBe('up');
  });
});

describe('WorkerPool on a DNS name', () => {
  it('resolves it to one worker per address, re-resolves, and serves once one worker is ready', async () => {
    // localhost resolves on every machine; nothing listens on port 1, so no worker becomes ready.
    const pool = new WorkerPool(loadConfig({}, { workerDns: 'localhost:1', workerStartTimeoutMs: 300, workerAddresses: [] }), { log() {}, warn() {} });
    await expect(pool.start()).rejects.toThrow(/no worker serving after 300 ms: .*:1/);
    expect(pool.workers.length).toBeGreaterThanOrEqual(1);
    expect(pool.workers.every((x) => x.rpc.address.endsWith(':1'))).toBe(true);
    await pool.stop();
  });
});

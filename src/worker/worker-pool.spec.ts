import * as grpc from '@grpc/grpc-js';
import { loadConfig } from '../config/config';
import { isWorkerFault, WorkerPool } from './worker-pool';
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

  it('counts UNAVAILABLE as a worker fault, request errors not', () => {
    expect(isWorkerFault(unavailable)).toBe(true);
    expect(isWorkerFault(new WorkerCallError('score', grpc.status.RESOURCE_EXHAUSTED, 'cap', 'a'))).toBe(false);
    expect(isWorkerFault(new Error('x'))).toBe(false);
  });
});

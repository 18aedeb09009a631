import { loadConfig } from '../config/config';
import { WorkerPool } from './worker-pool';
import { WorkerRpc } from './worker-rpc';

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

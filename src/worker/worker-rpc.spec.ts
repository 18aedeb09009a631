import * as grpc from '@grpc/grpc-js';
import { WorkerCallAbortedError, WorkerCallError, WorkerClientLike, WorkerRpc } from './worker-rpc';

type Handler = (req: unknown, opts: Partial<grpc.CallOptions>) => { err?: Partial<grpc.ServiceError>; res?: unknown; hang?: boolean };

function fakeClient(handler: Handler) {
  const log: { method: string; req: unknown; deadline?: grpc.Deadline; cancelled: boolean }[] = [];
  const client = new Proxy({} as WorkerClientLike, {
    get(_t, method: string) {
      if (method === 'close') return () => undefined;
      return (req: unknown, _md: grpc.Metadata, opts: Partial<grpc.CallOptions>, cb: (e: unknown, r: unknown) => void) => {
        const entry = { method, req, deadline: opts.deadline, cancelled: false };
        log.push(entry);
        const out = handler(req, opts);
        if (!out.hang) setImmediate(() => cb(out.err ? { code: grpc.status.UNKNOWN, details: '', ...out.err } : null, out.res));
        return {
          cancel: () => {
            entry.cancelled = true;
            setImmediate(() => cb({ code: grpc.status.CANCELLED, details: 'Cancelled on client' }, undefined));
          },
        };
      };
    },
  });
  return { client, log };
}

const opts = { deadlineMs: 1000, denoiseDeadlineMs: 50_000, retries: 2, retryBackoffMs: 1, maxMessageBytes: 1 << 20 };

describe('WorkerRpc', () => {
  it('sets a short deadline on ordinary calls and a long one on denoise', async () => {
    const { client, log } = fakeClient(() => ({ res: { tensors: [] } }));
    const rpc = new WorkerRpc('w:1', opts, client);
    const t0 = Date.now();
    await rpc.call('initialNoises', { namespace: 'n', model: 'm', seeds: ['1'] });
    await rpc.call('denoise', {} as never);
    expect(Number(log[0].deadline) - t0).toBeLessThanOrEqual(1000 + 50);
    expect(Number(log[1].deadline) - t0).toBeGreaterThan(40_000);
  });

  it('retries idempotent calls on UNAVAILABLE only', async () => {
    let n = 0;
    const { client, log } = fakeClient(() => (++n < 3 ? { err: { code: grpc.status.UNAVAILABLE } } : { res: { png: [] } }));
    const rpc = new WorkerRpc('w:1', opts, client);
    await expect(rpc.call('decode', { namespace: '', model: '', handles: [], upscale: 1 })).resolves.toEqual({ png: [] });
    expect(log).toHaveLength(3);
  });

  it('gives up after the configured retries', async () => {
    const { client, log } = fakeClient(() => ({ err: { code: grpc.status.UNAVAILABLE, details: 'down' } }));
    const rpc = new WorkerRpc('w:1', opts, client);
    await expect(rpc.call('score', {} as never)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    expect(log).toHaveLength(3);
  });

  it('never retries non-idempotent calls, nor other codes', async () => {
    const { client, log } = fakeClient(() => ({ err: { code: grpc.status.UNAVAILABLE } }));
    const rpc = new WorkerRpc('w:1', opts, client);
    await expect(rpc.call('denoise', {} as never)).rejects.toBeInstanceOf(WorkerCallError);
    await expect(rpc.call('forwardNoise', {} as never)).rejects.toBeInstanceOf(WorkerCallError);
    expect(log).toHaveLength(2);
    const other = fakeClient(() => ({ err: { code: grpc.status.INVALID_ARGUMENT, details: 'bad' } }));
    const rpc2 = new WorkerRpc('w:1', opts, other.client);
    await expect(rpc2.call('describe', {})).rejects.toThrow(/INVALID_ARGUMENT: bad/);
    expect(other.log).toHaveLength(1);
  });

  it('cancels the in-flight call when the signal fires', async () => {
    const { client, log } = fakeClient(() => ({ hang: true }));
    const rpc = new WorkerRpc('w:1', opts, client);
    const ac = new AbortController();
    const p = rpc.call('denoise', {} as never, ac.signal);
    expect(rpc.inFlight).toBe(1);
    ac.abort();
    await expect(p).rejects.toBeInstanceOf(WorkerCallAbortedError);
    expect(log[0].cancelled).toBe(true);
    expect(rpc.inFlight).toBe(0);
  });

  it('refuses to start a call on an aborted signal', async () => {
    const { client, log } = fakeClient(() => ({ res: {} }));
    const rpc = new WorkerRpc('w:1', opts, client);
    const ac = new AbortController();
    ac.abort();
    await expect(rpc.call('describe', {}, ac.signal)).rejects.toBeInstanceOf(WorkerCallAbortedError);
    expect(log).toHaveLength(0);
  });
});

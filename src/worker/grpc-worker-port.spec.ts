import type { Recipe } from '../gen/noisesearch/worker/v1/worker';
import { Solver } from '../gen/noisesearch/worker/v1/worker';
import { GrpcWorkerPort, NonFiniteError, WorkerProtocolError } from './grpc-worker-port';
import type { WorkerMethod, WorkerRpc } from './worker-rpc';

const recipe = (seed: string): Recipe => ({ seed: { seed, shape: ['1', '32', '32'] } });
const info = (handle: string) => ({ handle, shape: ['1', '32', '32'], dtype: 1, recipe: recipe(handle) });

function fakeRpc(answers: Partial<Record<WorkerMethod, (req: any) => unknown>>) {
  const calls: { method: WorkerMethod; req: any; signal?: AbortSignal }[] = [];
  const rpc = {
    call: async (method: WorkerMethod, req: any, signal?: AbortSignal) => {
      calls.push({ method, req, signal });
      const a = answers[method];
      if (!a) throw new Error(`unexpected ${method}`);
      return a(req);
    },
  } as unknown as WorkerRpc;
  return { rpc, calls };
}

describe('GrpcWorkerPort', () => {
  const signal = new AbortController().signal;
  const binding = { model: 'sit-fmnist', condition: { classLabel: 7 }, namespace: 'ns', signal };

  it('makes one RPC per port call carrying the whole batch, bound to model/condition/namespace/signal', async () => {
    const { rpc, calls } = fakeRpc({
      initialNoises: (r) => ({ tensors: r.seeds.map((s: string) => info(`h${s}`)) }),
      denoise: (r) => ({
        tensors: r.handles.map((h: string) => info(`${h}.d`)),
        nfes: String(4 * r.handles.length),
        captures: [{ requestedSigma: 0.4, sigma: 0.375, tensors: r.handles.map((h: string) => info(`${h}.x`)) }],
      }),
    });
    const port = new GrpcWorkerPort(rpc, binding);
    const noises = await port.initialNoises(['1', '2', '3']);
    expect(noises.map((n) => n.handle)).toEqual(['h1', 'h2', 'h3']);
    const d = await port.denoise({
      inputs: noises, solver: { solver: Solver.SOLVER_EULER, steps: 4, guidanceScale: 1 }, sigmaFrom: 1, sigmaTo: 0, captureSigmas: [0.4],
    });
    expect(calls).toHaveLength(2);
    expect(calls[0].req).toEqual({ namespace: 'ns', model: 'sit-fmnist', seeds: ['1', '2', '3'] });
    expect(calls[1].req).toMatchObject({
      namespace: 'ns', model: 'sit-fmnist', handles: ['h1', 'h2', 'h3'], conditions: [{ classLabel: 7 }],
      sigmaFrom: 1, sigmaTo: 0, captureSigmas: [0.4], releaseInputs: false,
    });
    expect(calls.every((c) => c.signal === signal)).toBe(true);
    expect(d.nfes).toBe(12);
    expect(d.outputs.map((o) => o.handle)).toEqual(['h1.d', 'h2.d', 'h3.d']);
    expect(d.captures[0].map((o) => o.handle)).toEqual(['h1.x', 'h2.x', 'h3.x']);
    expect(port.calls).toBe(2);
  });

  it('matches scores to samples by verifier name and index', async () => {
    const { rpc, calls } = fakeRpc({
      score: () => ({ results: [{ verifier: 'b', scores: [3, 4] }, { verifier: 'a', scores: [1, 2] }], verifierCalls: '4' }),
    });
    const port = new GrpcWorkerPort(rpc, binding);
    const samples = [{ handle: 'x', recipe: recipe('1') }, { handle: 'y', recipe: recipe('2') }];
    const r = await port.score({ samples, verifiers: ['a', 'b'], xPredictions: samples });
    expect(r).toEqual({ scores: { a: [1, 2], b: [3, 4] }, verifierCalls: 4 });
    expect(calls[0].req.xPredictionHandles).toEqual(['x', 'y']);
  });

  it('refuses answers of the wrong size', async () => {
    const { rpc } = fakeRpc({
      initialNoises: () => ({ tensors: [info('a')] }),
      score: () => ({ results: [{ verifier: 'a', scores: [1] }], verifierCalls: '1' }),
    });
    const port = new GrpcWorkerPort(rpc, binding);
    await expect(port.initialNoises(['1', '2'])).rejects.toBeInstanceOf(WorkerProtocolError);
    const two = [{ handle: 'x', recipe: recipe('1') }, { handle: 'y', recipe: recipe('2') }];
    await expect(port.score({ samples: two, verifiers: ['a'] })).rejects.toThrow(/1 scores for 2 samples/);
  });

  it('maps the remaining calls', async () => {
    const { rpc, calls } = fakeRpc({
      zeroOrderNeighbours: (r) => ({ tensors: r.seeds.map((s: string) => info(`n${s}`)) }),
      forwardNoise: (r) => ({ tensors: r.handles.map((h: string) => info(`${h}.f`)) }),
      xPrediction: (r) => ({ tensors: r.handles.map((h: string) => info(`${h}.x`)), nfes: '2', captures: [] }),
      decode: (r) => ({ png: r.handles.map(() => Buffer.from('png')) }),
      release: () => ({ released: 1, memoryUsedBytes: '0' }),
    });
    const port = new GrpcWorkerPort(rpc, { model: 'm', namespace: 'ns' });
    const pivot = { handle: 'p', recipe: recipe('0') };
    expect((await port.neighbours(pivot, 0.95, ['5', '6'])).map((t) => t.handle)).toEqual(['n5', 'n6']);
    expect((await port.forwardNoise([pivot], 0.5, 0.55, ['9']))[0].handle).toBe('p.f');
    expect(await port.xPrediction([pivot, pivot], 0.4, 1)).toMatchObject({ nfes: 2 });
    expect(await port.decode([pivot], 4)).toEqual([Buffer.from('png')]);
    await port.release([pivot]);
    await port.release([]);
    expect(calls.map((c) => c.method)).toEqual(['zeroOrderNeighbours', 'forwardNoise', 'xPrediction', 'decode', 'release']);
    expect(calls[0].req).toEqual({ namespace: 'ns', pivot: 'p', tau: 0.95, seeds: ['5', '6'] });
    expect(calls[2].req).toMatchObject({ conditions: [], guidanceScale: 1, sigma: 0.4 });
    expect(calls[3].req).toMatchObject({ upscale: 4 });
  });
});

describe('GrpcWorkerPort: non-finite numbers from the worker are errors naming the step', () => {
  const binding = { model: 'sit-fmnist', condition: { classLabel: 7 }, namespace: 'ns' };
  const ref = (h: string) => ({ handle: h, recipe: recipe(h) });

  it('a NaN or infinite score fails Score, naming the verifier and the sample', async () => {
    for (const bad of [NaN, Infinity, -Infinity]) {
      const { rpc } = fakeRpc({ score: () => ({ results: [{ verifier: 'classifier-logit', scores: [1, bad] }], verifierCalls: '2' }) });
      const port = new GrpcWorkerPort(rpc, binding);
      const e = await port.score({ samples: [ref('a'), ref('b')], verifiers: ['classifier-logit'] }).catch((x) => x);
      expect(e).toBeInstanceOf(NonFiniteError);
      expect(e).toBeInstanceOf(WorkerProtocolError);
      expect(e.message).toMatch(/^worker protocol: Score: verifier classifier-logit's score of sample 1 \((NaN|-?Infinity)\) is not finite/);
    }
  });

  it('a fetched sample with a NaN element (fp32, fp16, bf16) fails Fetch; finite ones pass', async () => {
    const f32 = Buffer.alloc(16); f32.writeFloatLE(1, 0); f32.writeFloatLE(NaN, 8);
    const f16 = Buffer.from([0x00, 0x3c, 0x00, 0x7e]); // 1.0, NaN
    const b16 = Buffer.from([0x80, 0x3f, 0x80, 0x7f]); // 1.0, +inf
    for (const [dtype, raw, at] of [[1, f32, 2], [2, f16, 1], [3, b16, 1]] as const) {
      const { rpc } = fakeRpc({ fetch: () => ({ tensors: [{ dtype, shape: ['4'], rawData: raw }] }) });
      const e = await new GrpcWorkerPort(rpc, binding).fetch([ref('a')]).catch((x) => x);
      expect(e).toBeInstanceOf(NonFiniteError);
      expect(e.message).toContain(`Fetch: element ${at} of sample 0`);
    }
    const ok = Buffer.alloc(8); ok.writeFloatLE(0.5, 0); ok.writeFloatLE(-2, 4);
    const { rpc } = fakeRpc({ fetch: () => ({ tensors: [{ dtype: 1, shape: ['2'], rawData: ok }] }) });
    expect(await new GrpcWorkerPort(rpc, binding).fetch([ref('a')])).toHaveLength(1);
  });
});

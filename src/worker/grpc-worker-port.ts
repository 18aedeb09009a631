// WorkerPort over gRPC: each port call is ONE Worker RPC carrying the whole batch.
// A port is bound to one search: its model, condition, worker namespace and AbortSignal;
// when the signal fires, the port's in-flight calls are cancelled.
import { DType, type Condition, type DenoiseResponse, type Recipe, type RunOp, type RunResult, type ScoreResponse, type Tensor, type TensorInfo } from '../gen/noisesearch/worker/v1/worker';
import type {
  DenoiseCall, DenoiseResult, OpInput, OpResult, PortOp, RunPort, ScoreCall, ScoreResult, TensorRef, WorkerPort,
} from '../search/worker-port';
import { WorkerRpc, type WorkerMethod, type WorkerMethods } from './worker-rpc';

export interface PortBinding {
  model: string;
  condition?: Condition;
  namespace: string;
  signal?: AbortSignal;
}

export class WorkerProtocolError extends Error {
  constructor(message: string) {
    super(`worker protocol: ${message}`);
    this.name = 'WorkerProtocolError';
  }
}

/**
 * A non-finite number from the worker (a diverged sample, NaN scores) is never a result: the search
 * fails at the step that produced it, named in the message.
 */
export class NonFiniteError extends WorkerProtocolError {
  constructor(step: string, what: string) {
    super(`${step}: ${what} is not finite (the sample diverged; try a smaller guidance_scale or more steps)`);
    this.name = 'NonFiniteError';
  }
}

/** Index of the first non-finite element of a float tensor's raw little-endian data, or -1. */
export function firstNonFinite(t: Tensor): number {
  const data = Buffer.from(t.rawData);
  if (t.dtype === DType.DTYPE_FLOAT32) {
    for (let i = 0; i + 4 <= data.length; i += 4) if (!Number.isFinite(data.readFloatLE(i))) return i / 4;
  } else if (t.dtype === DType.DTYPE_FLOAT16 || t.dtype === DType.DTYPE_BFLOAT16) {
    // fp16: exponent bits 0x7c00 all set; bf16: exponent bits 0x7f80 all set.
    const mask = t.dtype === DType.DTYPE_FLOAT16 ? 0x7c00 : 0x7f80;
    for (let i = 0; i + 2 <= data.length; i += 2) if ((data.readUInt16LE(i) & mask) === mask) return i / 2;
  }
  return -1;
}

function toRef(t: TensorInfo): TensorRef {
  if (!t.recipe) throw new WorkerProtocolError(`tensor ${t.handle} came without a recipe`);
  return { handle: t.handle, recipe: t.recipe };
}

function expectCount<T>(what: string, got: T[], want: number): T[] {
  if (got.length !== want) throw new WorkerProtocolError(`${what}: expected ${want} tensors, got ${got.length}`);
  return got;
}

export class GrpcWorkerPort implements WorkerPort, RunPort {
  /** RPCs this port made (one per port call). */
  calls = 0;

  constructor(private readonly rpc: WorkerRpc, readonly binding: PortBinding) {}

  private get conditions(): Condition[] {
    return this.binding.condition ? [this.binding.condition] : [];
  }

  private call<M extends WorkerMethod>(method: M, request: WorkerMethods[M][0]): Promise<WorkerMethods[M][1]> {
    this.calls++;
    return this.rpc.call(method, request, this.binding.signal);
  }

  async initialNoises(seeds: string[]): Promise<TensorRef[]> {
    const res = await this.call('initialNoises', { namespace: this.binding.namespace, model: this.binding.model, seeds });
    return expectCount('InitialNoises', res.tensors, seeds.length).map(toRef);
  }

  async neighbours(pivot: TensorRef, tau: number, seeds: string[]): Promise<TensorRef[]> {
    const res = await this.call('zeroOrderNeighbours', { namespace: this.binding.namespace, pivot: pivot.handle, tau, seeds });
    return expectCount('ZeroOrderNeighbours', res.tensors, seeds.length).map(toRef);
  }

  async denoise(call: DenoiseCall): Promise<DenoiseResult> {
    const captureSigmas = call.captureSigmas ?? [];
    const res = await this.call('denoise', {
      namespace: this.binding.namespace,
      model: this.binding.model,
      handles: call.inputs.map((t) => t.handle),
      conditions: this.conditions,
      solver: call.solver,
      sigmaFrom: call.sigmaFrom,
      sigmaTo: call.sigmaTo,
      captureSigmas,
      releaseInputs: call.releaseInputs ?? false,
      firstPredictions: (call.firstPredictions ?? []).map((t) => t.handle),
    });
    return denoiseResult(res, captureSigmas, call.inputs.length);
  }

  async forwardNoise(inputs: TensorRef[], sigmaFrom: number, sigmaTo: number, seeds: string[]): Promise<TensorRef[]> {
    const res = await this.call('forwardNoise', {
      namespace: this.binding.namespace, handles: inputs.map((t) => t.handle), sigmaFrom, sigmaTo, seeds,
    });
    return expectCount('ForwardNoise', res.tensors, inputs.length).map(toRef);
  }

  async xPrediction(inputs: TensorRef[], sigma: number, guidanceScale: number): Promise<{ outputs: TensorRef[]; nfes: number }> {
    const res = await this.call('xPrediction', {
      namespace: this.binding.namespace,
      model: this.binding.model,
      handles: inputs.map((t) => t.handle),
      conditions: this.conditions,
      guidanceScale,
      sigma,
    });
    return { outputs: expectCount('XPrediction', res.tensors, inputs.length).map(toRef), nfes: Number(res.nfes) };
  }

  async score(call: ScoreCall): Promise<ScoreResult> {
    const res = await this.call('score', {
      namespace: this.binding.namespace,
      model: this.binding.model,
      handles: call.samples.map((t) => t.handle),
      verifiers: call.verifiers,
      conditions: this.conditions,
      xPredictionHandles: (call.xPredictions ?? []).map((t) => t.handle),
    });
    return scoreResult(res, call.verifiers, call.samples.length);
  }

  /** Several dependent calls in one Worker.Run round trip; each op as its own RPC would make it. */
  async run(ops: PortOp[]): Promise<OpResult[]> {
    const ns = this.binding.namespace;
    const model = this.binding.model;
    const h = (x: OpInput) => ('handle' in x ? x.handle : x.capture === undefined ? `@${x.op}.${x.index}` : `@${x.op}.c${x.capture}.${x.index}`);
    const wire: RunOp[] = ops.map((op): RunOp => {
      switch (op.kind) {
        case 'initialNoises': return { initialNoises: { namespace: ns, model, seeds: op.seeds } };
        case 'neighbours': return { neighbours: { namespace: ns, pivot: h(op.pivot), tau: op.tau, seeds: op.seeds } };
        case 'forwardNoise': return { forwardNoise: { namespace: ns, handles: op.inputs.map(h), sigmaFrom: op.sigmaFrom, sigmaTo: op.sigmaTo, seeds: op.seeds } };
        case 'denoise': {
          const c = op.call;
          return { denoise: {
            namespace: ns, model, handles: c.inputs.map(h), conditions: this.conditions, solver: c.solver, sigmaFrom: c.sigmaFrom,
            sigmaTo: c.sigmaTo, captureSigmas: c.captureSigmas ?? [], releaseInputs: c.releaseInputs ?? false,
            firstPredictions: (c.firstPredictions ?? []).map(h),
          } };
        }
        case 'xPrediction': return { xPrediction: { namespace: ns, model, handles: op.inputs.map(h), conditions: this.conditions, guidanceScale: op.guidanceScale, sigma: op.sigma } };
        case 'score': return { score: {
          namespace: ns, model, handles: op.call.samples.map(h), verifiers: op.call.verifiers, conditions: this.conditions,
          xPredictionHandles: (op.call.xPredictions ?? []).map(h),
        } };
        case 'release': return { release: { namespace: ns, handles: op.inputs.map(h), all: false } };
        case 'decode': return { decode: { namespace: ns, model, handles: op.inputs.map(h), upscale: op.upscale ?? 1 } };
      }
    });
    const res = await this.call('run', { ops: wire });
    if (res.results.length !== ops.length) throw new WorkerProtocolError(`Run: ${res.results.length} results for ${ops.length} ops`);
    return ops.map((op, i): OpResult => {
      const r: RunResult = res.results[i];
      switch (op.kind) {
        case 'initialNoises':
        case 'neighbours':
          return { outputs: expectCount('Run', r.tensors?.tensors ?? [], op.seeds.length).map(toRef) };
        case 'forwardNoise':
          return { outputs: expectCount('Run', r.tensors?.tensors ?? [], op.inputs.length).map(toRef) };
        case 'denoise': {
          if (!r.denoise) throw new WorkerProtocolError('Run: a denoise op without its result');
          const d = denoiseResult(r.denoise, op.call.captureSigmas ?? [], op.call.inputs.length);
          return { outputs: d.outputs, captures: d.captures, nfes: d.nfes };
        }
        case 'xPrediction':
          if (!r.denoise) throw new WorkerProtocolError('Run: an x-prediction op without its result');
          return { outputs: expectCount('Run', r.denoise.tensors, op.inputs.length).map(toRef), nfes: Number(r.denoise.nfes) };
        case 'score':
          if (!r.score) throw new WorkerProtocolError('Run: a score op without its result');
          return { outputs: [], score: scoreResult(r.score, op.call.verifiers, op.call.samples.length) };
        case 'release':
          return { outputs: [] };
        case 'decode':
          return { outputs: [], pngs: expectCount('Run decode', r.decode?.png ?? [], op.inputs.length) as Buffer[] };
      }
    });
  }

  async decode(samples: TensorRef[], upscale = 1): Promise<Buffer[]> {
    const res = await this.call('decode', {
      namespace: this.binding.namespace, model: this.binding.model, handles: samples.map((t) => t.handle), upscale,
    });
    return expectCount('Decode', res.png, samples.length);
  }

  /** The samples as raw little-endian tensors (for `return.raw_tensor`). */
  async fetch(samples: TensorRef[]): Promise<Tensor[]> {
    const res = await this.call('fetch', { namespace: this.binding.namespace, handles: samples.map((t) => t.handle) });
    const tensors = expectCount('Fetch', res.tensors, samples.length);
    tensors.forEach((t, i) => {
      const at = firstNonFinite(t);
      if (at >= 0) throw new NonFiniteError('Fetch', `element ${at} of sample ${i}`);
    });
    return tensors;
  }

  async materialize(recipes: Recipe[]): Promise<TensorRef[]> {
    const res = await this.call('materialize', { namespace: this.binding.namespace, recipes });
    return expectCount('Materialize', res.tensors, recipes.length).map(toRef);
  }

  async release(samples: TensorRef[]): Promise<void> {
    if (samples.length === 0) return;
    await this.call('release', { namespace: this.binding.namespace, handles: samples.map((t) => t.handle), all: false });
  }

  /** Frees everything this search left in its namespace (best effort, never cancelled by the signal). */
  async releaseAll(): Promise<void> {
    this.calls++;
    await this.rpc.call('release', { namespace: this.binding.namespace, handles: [], all: true });
  }
}

function denoiseResult(res: DenoiseResponse, captureSigmas: number[], count: number): DenoiseResult {
  const outputs = expectCount('Denoise', res.tensors, count).map(toRef);
  // Match captures to the requested levels by requested_sigma (not by arrival order).
  const captures = captureSigmas.map((s, i) => {
    const c = res.captures.find((x) => x.requestedSigma === s) ?? res.captures[i];
    if (!c) throw new WorkerProtocolError(`Denoise: no capture for sigma ${s}`);
    return expectCount(`Denoise capture at ${s}`, c.tensors, count).map(toRef);
  });
  return { outputs, nfes: Number(res.nfes), captures };
}

function scoreResult(res: ScoreResponse, verifiers: string[], count: number): ScoreResult {
  const scores: Record<string, number[]> = {};
  for (const v of verifiers) {
    const r = res.results.find((x) => x.verifier === v);
    if (!r) throw new WorkerProtocolError(`Score: no result for verifier ${v}`);
    if (r.scores.length !== count) {
      throw new WorkerProtocolError(`Score: verifier ${v} returned ${r.scores.length} scores for ${count} samples`);
    }
    const bad = r.scores.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0) throw new NonFiniteError('Score', `verifier ${v}'s score of sample ${bad} (${r.scores[bad]})`);
    scores[v] = r.scores;
  }
  return { scores, verifierCalls: Number(res.verifierCalls), wallSeconds: res.wallSeconds };
}

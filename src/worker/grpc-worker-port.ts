// WorkerPort over gRPC: each port call is ONE Worker RPC carrying the whole batch.
// A port is bound to one search: its model, condition, worker namespace and AbortSignal;
// when the signal fires, the port's in-flight calls are cancelled.
import type { Condition, Recipe, Tensor, TensorInfo } from '../gen/noisesearch/worker/v1/worker';
import type {
  DenoiseCall, DenoiseResult, ScoreCall, ScoreResult, TensorRef, WorkerPort,
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

function toRef(t: TensorInfo): TensorRef {
  if (!t.recipe) throw new WorkerProtocolError(`tensor ${t.handle} came without a recipe`);
  return { handle: t.handle, recipe: t.recipe };
}

function expectCount<T>(what: string, got: T[], want: number): T[] {
  if (got.length !== want) throw new WorkerProtocolError(`${what}: expected ${want} tensors, got ${got.length}`);
  return got;
}

export class GrpcWorkerPort implements WorkerPort {
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
    });
    const outputs = expectCount('Denoise', res.tensors, call.inputs.length).map(toRef);
    // Match captures to the requested levels by requested_sigma (not by arrival order).
    const captures = captureSigmas.map((s, i) => {
      const c = res.captures.find((x) => x.requestedSigma === s) ?? res.captures[i];
      if (!c) throw new WorkerProtocolError(`Denoise: no capture for sigma ${s}`);
      return expectCount(`Denoise capture at ${s}`, c.tensors, call.inputs.length).map(toRef);
    });
    return { outputs, nfes: Number(res.nfes), captures };
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
    const scores: Record<string, number[]> = {};
    for (const v of call.verifiers) {
      const r = res.results.find((x) => x.verifier === v);
      if (!r) throw new WorkerProtocolError(`Score: no result for verifier ${v}`);
      if (r.scores.length !== call.samples.length) {
        throw new WorkerProtocolError(`Score: verifier ${v} returned ${r.scores.length} scores for ${call.samples.length} samples`);
      }
      scores[v] = r.scores;
    }
    return { scores, verifierCalls: Number(res.verifierCalls), wallSeconds: res.wallSeconds };
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
    return expectCount('Fetch', res.tensors, samples.length);
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

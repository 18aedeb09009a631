// The port the algorithms actually use: a WorkerPort over the real one that names every tensor by a
// stable handle of its own, remembers the recipe behind it, and rebuilds it on the worker
// (Worker.Materialize, bit-identical) when the worker no longer has it:
//  - after a resume, restored tensors exist by recipe only and are rebuilt when first used;
//  - after a worker fault (the worker died, or the search moved to another worker), `recover` gives a
//    port to continue on, every tensor counts as lost, and the failed call is made again.
// NFEs spent again (rebuilds, and a repeated call that runs the network) are reported through
// `onRecoveryNfes`, apart from the plan: the search ledger still charges each planned call once.
import type { Recipe } from '../gen/noisesearch/worker/v1/worker';
import { SearchError } from './errors';
import { recipeNfes } from './nfe';
import { canRun, type DenoiseCall, type DenoiseResult, type OpInput, type OpResult, type PortOp, type RunPort, type ScoreCall, type ScoreResult, type TensorRef, type WorkerPort } from './worker-port';

/** Given a failed call's error: a port to continue on (the worker has lost every tensor), or undefined to fail. */
export type RecoverFn = (error: unknown, fault: number) => Promise<WorkerPort | undefined>;

export interface ResilientOptions {
  recover?: RecoverFn;
  onRecoveryNfes?: (nfes: number, what: string) => void;
  signal?: AbortSignal;
  /** Faults survived per search before giving up. */
  maxFaults?: number;
  /** NFEs of rebuilding one recipe (default: nfe.ts rules, guidance doubling the batch). */
  recipeNfes?: (recipe: Recipe) => number;
}

interface Entry {
  recipe: Recipe;
  /** The handle on the current worker; absent until (re)built there. */
  real?: string;
}

export class ResilientPort implements WorkerPort, RunPort {
  private readonly entries = new Map<string, Entry>();
  private next = 0;
  private port: WorkerPort;
  /** Worker calls made (rebuilds and repeats included). */
  calls = 0;
  faults = 0;

  constructor(port: WorkerPort, private readonly opts: ResilientOptions = {}) {
    this.port = this.counted(port);
  }

  /** A tensor known by its recipe only (from a checkpoint): rebuilt on the worker when first used. */
  adopt(handle: string, recipe: Recipe): TensorRef {
    let e = this.entries.get(handle);
    if (!e) this.entries.set(handle, (e = { recipe }));
    const m = /^v(\d+)$/.exec(handle);
    if (m) this.next = Math.max(this.next, Number(m[1]));
    return { handle, recipe: e.recipe };
  }

  /** The worker's own refs for these tensors (rebuilding them if needed), for callers outside the port. */
  resolve(refs: TensorRef[]): Promise<TensorRef[]> {
    return this.guarded('resolve', (p) => this.realize(p, refs));
  }

  /** The worker's refs of tensors that are on the worker now, or undefined when one is not: no call, no rebuild. */
  peek(refs: TensorRef[]): TensorRef[] | undefined {
    const out: TensorRef[] = [];
    for (const r of refs) {
      const e = this.entries.get(r.handle);
      if (e?.real === undefined) return undefined;
      out.push({ handle: e.real, recipe: e.recipe });
    }
    return out;
  }

  async initialNoises(seeds: string[]): Promise<TensorRef[]> {
    return this.wrap(await this.guarded('InitialNoises', (p) => p.initialNoises(seeds)));
  }

  async neighbours(pivot: TensorRef, tau: number, seeds: string[]): Promise<TensorRef[]> {
    const out = await this.guarded('ZeroOrderNeighbours', async (p) => {
      const [real] = await this.realize(p, [pivot]);
      return p.neighbours(real, tau, seeds);
    });
    return this.wrap(out);
  }

  async denoise(call: DenoiseCall): Promise<DenoiseResult> {
    const res = await this.guarded('Denoise', async (p) => {
      const n = call.inputs.length;
      const real = await this.realize(p, [...call.inputs, ...(call.firstPredictions ?? [])]);
      return p.denoise({ ...call, inputs: real.slice(0, n), ...(call.firstPredictions ? { firstPredictions: real.slice(n) } : {}) });
    }, (r) => r.nfes);
    if (call.releaseInputs) for (const r of call.inputs) this.entries.delete(r.handle);
    return { outputs: this.wrap(res.outputs), nfes: res.nfes, captures: res.captures.map((c) => this.wrap(c)) };
  }

  async forwardNoise(inputs: TensorRef[], sigmaFrom: number, sigmaTo: number, seeds: string[]): Promise<TensorRef[]> {
    return this.wrap(await this.guarded('ForwardNoise', async (p) => p.forwardNoise(await this.realize(p, inputs), sigmaFrom, sigmaTo, seeds)));
  }

  async xPrediction(inputs: TensorRef[], sigma: number, guidanceScale: number): Promise<{ outputs: TensorRef[]; nfes: number }> {
    const res = await this.guarded('XPrediction', async (p) => p.xPrediction(await this.realize(p, inputs), sigma, guidanceScale), (r) => r.nfes);
    return { outputs: this.wrap(res.outputs), nfes: res.nfes };
  }

  score(call: ScoreCall): Promise<ScoreResult> {
    return this.guarded('Score', async (p) => {
      const n = call.samples.length;
      const real = await this.realize(p, [...call.samples, ...(call.xPredictions ?? [])]);
      return p.score({ ...call, samples: real.slice(0, n), ...(call.xPredictions ? { xPredictions: real.slice(n) } : {}) });
    });
  }

  /** Whether the current worker takes several calls in one round trip. */
  get runs(): boolean {
    return canRun(this.port);
  }

  /** Several dependent calls in one round trip (Worker.Run); on a fault the whole batch is made again. */
  async run(ops: PortOp[]): Promise<OpResult[]> {
    const held = (x: OpInput): x is TensorRef => 'handle' in x;
    const inputsOf = (op: PortOp): OpInput[] => {
      switch (op.kind) {
        case 'initialNoises': case 'release': return [];
        case 'neighbours': return [op.pivot];
        case 'forwardNoise': case 'xPrediction': case 'decode': return op.inputs;
        case 'denoise': return [...op.call.inputs, ...(op.call.firstPredictions ?? [])];
        case 'score': return [...op.call.samples, ...(op.call.xPredictions ?? [])];
      }
    };
    const res = await this.guarded('Run', async (p) => {
      if (!canRun(p)) throw new SearchError('INTERNAL', 'Run: the worker port cannot run batches');
      const refs = ops.flatMap(inputsOf).filter(held);
      const real = await this.realize(p, refs);
      const byHandle = new Map(refs.map((r, i) => [r.handle, real[i]]));
      const sub = (x: OpInput): OpInput => (held(x) ? byHandle.get(x.handle)! : x);
      return p.run(ops.map((op): PortOp => {
        switch (op.kind) {
          case 'initialNoises': return op;
          // Only what the current worker holds is released there (a tensor known by recipe only has nothing to free).
          case 'release': return { ...op, inputs: op.inputs.flatMap((r): OpInput[] => {
            if (!held(r)) return [r];
            const e = this.entries.get(r.handle);
            return e?.real !== undefined ? [{ handle: e.real, recipe: e.recipe }] : [];
          }) };
          case 'neighbours': return { ...op, pivot: sub(op.pivot) };
          case 'forwardNoise': case 'xPrediction': case 'decode': return { ...op, inputs: op.inputs.map(sub) };
          case 'denoise': return { ...op, call: { ...op.call, inputs: op.call.inputs.map(sub), ...(op.call.firstPredictions ? { firstPredictions: op.call.firstPredictions.map(sub) } : {}) } };
          case 'score': return { ...op, call: { ...op.call, samples: op.call.samples.map(sub), ...(op.call.xPredictions ? { xPredictions: op.call.xPredictions.map(sub) } : {}) } };
        }
      }));
    }, (r) => r.reduce((sum, x) => sum + (x.nfes ?? 0), 0));
    const wrapped = res.map((r) => ({ ...r, outputs: this.wrap(r.outputs), ...(r.captures ? { captures: r.captures.map((c) => this.wrap(c)) } : {}) }));
    // Inputs the worker freed (release_inputs, release) are gone, whether held before the call or made in it.
    ops.forEach((op) => {
      if (op.kind === 'release') {
        for (const x of op.inputs) {
          this.entries.delete((held(x) ? x : x.capture === undefined ? wrapped[x.op].outputs[x.index] : wrapped[x.op].captures![x.capture][x.index]).handle);
        }
      }
      if (op.kind !== 'denoise' || !op.call.releaseInputs) return;
      for (const x of op.call.inputs) {
        const handle = held(x) ? x.handle : (x.capture === undefined ? wrapped[x.op].outputs[x.index] : wrapped[x.op].captures![x.capture][x.index]).handle;
        this.entries.delete(handle);
      }
    });
    return wrapped;
  }

  decode(samples: TensorRef[], upscale?: number): Promise<Buffer[]> {
    return this.guarded('Decode', async (p) => p.decode(await this.realize(p, samples), upscale));
  }

  async materialize(recipes: Recipe[]): Promise<TensorRef[]> {
    return this.wrap(await this.guarded('Materialize', (p) => p.materialize(recipes)));
  }

  async release(samples: TensorRef[]): Promise<void> {
    const real: TensorRef[] = [];
    for (const s of samples) {
      const e = this.entries.get(s.handle);
      if (!e) continue;
      this.entries.delete(s.handle);
      if (e.real !== undefined) real.push({ handle: e.real, recipe: e.recipe });
    }
    if (real.length === 0) return;
    try {
      await this.port.release(real);
    } catch (e) {
      // A worker that died took these tensors with it; anything else is a real error.
      if (!this.opts.recover) throw e;
      const next = await this.recoverFrom(e);
      if (!next) throw e;
    }
  }

  /** Runs one call; on a fault, moves to the port `recover` gives and runs it again. */
  private async guarded<T>(what: string, attempt: (port: WorkerPort) => Promise<T>, repeatedNfes?: (res: T) => number): Promise<T> {
    let repeated = false;
    for (;;) {
      try {
        const res = await attempt(this.port);
        if (repeated && repeatedNfes) this.recovered(repeatedNfes(res), `${what} repeated after a worker fault`);
        return res;
      } catch (e) {
        if (!(await this.recoverFrom(e))) throw e;
        repeated = true;
      }
    }
  }

  private async recoverFrom(e: unknown): Promise<boolean> {
    const { recover, signal, maxFaults = 5 } = this.opts;
    if (!recover || signal?.aborted || this.faults >= maxFaults || e instanceof SearchError) return false;
    const next = await recover(e, this.faults + 1);
    if (!next) return false;
    this.faults++;
    this.port = this.counted(next);
    for (const entry of this.entries.values()) entry.real = undefined; // every tensor is lost with the worker
    return true;
  }

  /** Real refs for `refs`, rebuilding (one Materialize call) those the current worker does not hold. */
  private async realize(port: WorkerPort, refs: TensorRef[]): Promise<TensorRef[]> {
    const entries = refs.map((r) => {
      const e = this.entries.get(r.handle);
      if (!e) throw new SearchError('INTERNAL', `tensor ${r.handle} was used after it was released`);
      return e;
    });
    const missing = [...new Set(entries.filter((e) => e.real === undefined))];
    if (missing.length > 0) {
      const made = await port.materialize(missing.map((e) => e.recipe));
      if (made.length !== missing.length) throw new SearchError('INTERNAL', `Materialize returned ${made.length} tensors for ${missing.length} recipes`);
      missing.forEach((e, i) => { e.real = made[i].handle; });
      const cost = this.opts.recipeNfes ?? ((r: Recipe) => recipeNfes(r));
      this.recovered(missing.reduce((s, e) => s + cost(e.recipe), 0), `${missing.length} tensors rebuilt from their recipes`);
    }
    return entries.map((e) => ({ handle: e.real!, recipe: e.recipe }));
  }

  private recovered(nfes: number, what: string): void {
    if (nfes > 0) this.opts.onRecoveryNfes?.(nfes, what);
  }

  private wrap(refs: TensorRef[]): TensorRef[] {
    return refs.map((r) => {
      const handle = `v${++this.next}`;
      this.entries.set(handle, { recipe: r.recipe, real: r.handle });
      return { handle, recipe: r.recipe };
    });
  }

  /** Counts worker calls for the account, without the algorithms knowing. */
  private counted(port: WorkerPort): WorkerPort {
    return new Proxy(port, {
      get: (target, prop, receiver) => {
        const value = Reflect.get(target, prop, receiver);
        if (typeof value !== 'function') return value;
        return (...args: unknown[]) => {
          this.calls++;
          return value.apply(target, args);
        };
      },
    });
  }
}

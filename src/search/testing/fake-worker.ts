// An in-process worker for unit tests: small Float64Array "samples", seeded noises, the exact
// zero-order neighbour formula and forward kernel, a toy deterministic ODE, toy verifiers, and
// NFEs reported by the same nfe.ts rules the worker follows. It fails loudly on misuse
// (a released handle used again) and records every call so tests can count batching.
import { createHash } from 'node:crypto';
import { Solver, type Condition, type Recipe, type SolverSettings } from '../../gen/noisesearch/worker/v1/worker';
import type { Catalog } from '../catalog';
import { guidanceFactor, solveNfes } from '../nfe';
import type { DenoiseCall, DenoiseResult, ScoreCall, ScoreResult, TensorRef, WorkerPort } from '../worker-port';

export const FAKE_MODEL = 'sit-fmnist';

export const FAKE_CATALOG: Catalog = {
  models: [
    { name: FAKE_MODEL, numClasses: 10, acceptsPrompt: false, defaultSolver: { solver: Solver.SOLVER_HEUN, steps: 10, guidanceScale: 1 } },
    { name: 'other-model', numClasses: 3, acceptsPrompt: false, defaultSolver: { solver: Solver.SOLVER_EULER, steps: 8, guidanceScale: 1 } },
  ],
  verifiers: [
    { name: 'supervised', heldOut: false, needsClassLabel: true, needsPrompt: false, models: [FAKE_MODEL] },
    { name: 'self-supervised', heldOut: false, needsClassLabel: false, needsPrompt: false, needsXPredictionAt: 0.4, models: [FAKE_MODEL] },
    { name: 'aesthetic', heldOut: false, needsClassLabel: false, needsPrompt: false, models: [FAKE_MODEL] },
    { name: 'heldout', heldOut: true, needsClassLabel: true, needsPrompt: false, models: [FAKE_MODEL] },
    { name: 'other-only', heldOut: false, needsClassLabel: false, needsPrompt: false, models: ['other-model'] },
  ],
  maxRequestSamples: 1024,
};

interface Stored {
  vec: Float64Array;
  recipe: Recipe;
}

export interface FakeCall {
  method: keyof WorkerPort;
  batch: number;
  detail?: unknown;
}

export interface FakeWorkerOptions {
  dim?: number;
  condition?: Condition;
  /** Added to every reported denoise NFE count, to test the account's check. */
  nfeSkew?: number;
  /** Replaces a verifier's score: (verifier, sample index in the call, 1-based score call number). */
  scoreOverride?: (verifier: string, index: number, scoreCall: number) => number | undefined;
  /** Called before every call; throw or abort from here to simulate faults and cancellation. */
  beforeCall?: (method: keyof WorkerPort, calls: FakeCall[]) => void;
}

export class FakeWorker implements WorkerPort {
  readonly calls: FakeCall[] = [];
  readonly doubleReleases: string[] = [];
  private readonly store = new Map<string, Stored>();
  private readonly released = new Set<string>();
  private nextHandle = 0;
  private down = false;
  readonly dim: number;
  readonly direction: Float64Array;

  constructor(private readonly opts: FakeWorkerOptions = {}) {
    this.dim = opts.dim ?? 8;
    this.direction = unit(normals('direction', this.dim));
  }

  liveHandles(): number {
    return this.store.size;
  }

  vector(ref: TensorRef): Float64Array {
    return this.get(ref).vec;
  }

  countOf(method: keyof WorkerPort): number {
    return this.calls.filter((c) => c.method === method).length;
  }

  async initialNoises(seeds: string[]): Promise<TensorRef[]> {
    this.record('initialNoises', seeds.length);
    return seeds.map((seed) => this.put(normals(seed, this.dim), { seed: { seed, shape: [String(this.dim)] } }));
  }

  async neighbours(pivot: TensorRef, tau: number, seeds: string[]): Promise<TensorRef[]> {
    this.record('neighbours', seeds.length);
    const n = this.get(pivot).vec;
    return seeds.map((seed) => this.put(neighbourOf(n, tau, seed), { neighbour: { pivot: pivot.recipe, tau, seed } }));
  }

  async denoise(call: DenoiseCall): Promise<DenoiseResult> {
    this.record('denoise', call.inputs.length, call);
    const { solver, sigmaFrom, sigmaTo } = call;
    if (!(sigmaTo < sigmaFrom)) throw new Error(`fake: sigma_to ${sigmaTo} must be < sigma_from ${sigmaFrom}`);
    if (!(solver.steps > 0) || solver.guidanceScale === undefined || !solver.solver) throw new Error('fake: unresolved solver');
    const span = sigmaFrom - sigmaTo;
    const stochastic = solver.solver === Solver.SOLVER_DDIM_ETA;
    const reuse = call.firstPredictions;
    if (reuse) {
      // As the real worker: each must be its input's x-prediction at sigma_from with the solver's guidance.
      if (reuse.length !== call.inputs.length) throw new Error('fake: one first prediction per input');
      reuse.forEach((f, i) => {
        const p = this.get(f) && f.recipe.xPrediction;
        if (!p || p.sigma !== sigmaFrom || p.guidanceScale !== solver.guidanceScale || JSON.stringify(p.parent) !== JSON.stringify(call.inputs[i].recipe)) {
          throw new Error(`fake: firstPredictions[${i}] is not the x-prediction of input ${i} at ${sigmaFrom}`);
        }
      });
    }
    const outputs = call.inputs.map((ref, i) => {
      const x = this.get(ref).vec;
      const out = toySolve(x, span, solver, sigmaTo, i);
      return this.put(out, {
        denoise: {
          parent: ref.recipe, model: FAKE_MODEL, condition: this.opts.condition, solver, sigmaFrom, sigmaTo, stopAfterSteps: 0,
          ...(stochastic ? { particle: i } : {}), ...(reuse ? { firstPrediction: { reproducibility: 0, rows: [] } } : {}),
        },
      });
    });
    const captures = (call.captureSigmas ?? []).map((s) => {
      if (s > sigmaFrom || s < sigmaTo) throw new Error(`fake: capture ${s} outside [${sigmaTo}, ${sigmaFrom}]`);
      // As the real worker: the parent of a capture is the denoise stopped part-way (here always after step 1).
      return outputs.map((o, j) =>
        this.put(toyXPrediction(this.get(call.inputs[j]).vec, this.get(o).vec, s), {
          xPrediction: {
            parent: { denoise: { ...o.recipe.denoise!, stopAfterSteps: 1 } },
            model: FAKE_MODEL, condition: this.opts.condition, guidanceScale: solver.guidanceScale!, sigma: s,
          },
        }),
      );
    });
    if (call.releaseInputs) for (const r of call.inputs) this.drop(r.handle);
    const perSample = solveNfes(solver.solver, solver.steps, sigmaTo, solver.guidanceScale!) - (reuse ? guidanceFactor(solver.guidanceScale!) : 0);
    return { outputs, nfes: perSample * call.inputs.length + (this.opts.nfeSkew ?? 0), captures };
  }

  async forwardNoise(inputs: TensorRef[], sigmaFrom: number, sigmaTo: number, seeds: string[]): Promise<TensorRef[]> {
    this.record('forwardNoise', inputs.length);
    if (seeds.length !== inputs.length) throw new Error('fake: one seed per input');
    if (!(sigmaFrom < sigmaTo && sigmaTo <= 1)) throw new Error('fake: forward noise must go up');
    return inputs.map((ref, i) =>
      this.put(forwardOf(this.get(ref).vec, sigmaFrom, sigmaTo, seeds[i]), { forwardNoise: { parent: ref.recipe, sigmaFrom, sigmaTo, seed: seeds[i] } }));
  }

  async xPrediction(inputs: TensorRef[], sigma: number, guidanceScale: number): Promise<{ outputs: TensorRef[]; nfes: number }> {
    this.record('xPrediction', inputs.length);
    const outputs = inputs.map((ref) => {
      const x = this.get(ref).vec;
      return this.put(toyFlow(x, sigma, 1, guidanceScale), {
        xPrediction: { parent: ref.recipe, model: FAKE_MODEL, condition: this.opts.condition, guidanceScale, sigma },
      });
    });
    return { outputs, nfes: inputs.length * guidanceFactor(guidanceScale) };
  }

  async score(call: ScoreCall): Promise<ScoreResult> {
    this.record('score', call.samples.length, call);
    const xs = call.samples.map((s) => this.get(s).vec);
    const scores: Record<string, number[]> = {};
    const scoreCall = this.countOf('score');
    for (const v of call.verifiers) {
      scores[v] = xs.map((x, i) => {
        const forced = this.opts.scoreOverride?.(v, i, scoreCall);
        if (forced !== undefined) return forced;
        switch (v) {
          case 'supervised':
            return dot(x, this.direction);
          case 'heldout':
            return -Math.hypot(...x.map((xi, j) => xi - this.direction[j]));
          case 'aesthetic':
            return x.reduce((s, xi) => s + Math.sin(xi), 0);
          case 'self-supervised': {
            if (!call.xPredictions) throw new Error('fake: self-supervised needs x-predictions');
            return cosine(this.get(call.xPredictions[i]).vec, x);
          }
          default:
            throw new Error(`fake: unknown verifier ${v}`);
        }
      });
    }
    // A fixed time per scored sample and verifier, so that accounts compare exactly.
    return { scores, verifierCalls: xs.length * call.verifiers.length, wallSeconds: xs.length * call.verifiers.length / 1024 };
  }

  async decode(samples: TensorRef[], upscale?: number): Promise<Buffer[]> {
    this.record('decode', samples.length, { upscale });
    return samples.map((s) => Buffer.concat([Buffer.from([upscale ?? 1]), Buffer.from(this.get(s).vec.buffer.slice(0))]));
  }

  async materialize(recipes: Recipe[]): Promise<TensorRef[]> {
    this.record('materialize', recipes.length);
    return recipes.map((r) => this.put(this.rebuild(r), r));
  }

  async release(samples: TensorRef[]): Promise<void> {
    this.record('release', samples.length);
    for (const s of samples) this.drop(s.handle);
  }

  /** The worker process dies: every tensor is lost and calls fail UNAVAILABLE until restart(). */
  crash(): void {
    this.down = true;
    this.store.clear();
  }

  restart(): void {
    this.down = false;
  }

  /** Replays a recipe (as Worker.Materialize): the same arithmetic as the calls that made it. */
  private rebuild(r: Recipe): Float64Array {
    if (r.seed) return normals(r.seed.seed, this.dim);
    if (r.neighbour) return neighbourOf(this.rebuild(r.neighbour.pivot!), r.neighbour.tau, r.neighbour.seed);
    if (r.forwardNoise) {
      const f = r.forwardNoise;
      return forwardOf(this.rebuild(f.parent!), f.sigmaFrom, f.sigmaTo, f.seed);
    }
    if (r.denoise) {
      const d = r.denoise;
      return toySolve(this.rebuild(d.parent!), d.sigmaFrom - d.sigmaTo, d.solver!, d.sigmaTo, d.particle ?? 0);
    }
    if (r.xPrediction) {
      const p = r.xPrediction;
      const d = p.parent?.denoise;
      if (d && d.stopAfterSteps > 0) {
        const input = this.rebuild(d.parent!);
        return toyXPrediction(input, toySolve(input, d.sigmaFrom - d.sigmaTo, d.solver!, d.sigmaTo, d.particle ?? 0), p.sigma);
      }
      return toyFlow(this.rebuild(p.parent!), p.sigma, 1, p.guidanceScale);
    }
    throw new Error('fake: recipe cannot be rebuilt');
  }

  private drop(handle: string): void {
    if (!this.store.delete(handle)) this.doubleReleases.push(handle);
    this.released.add(handle);
  }

  private record(method: keyof WorkerPort, batch: number, detail?: unknown): void {
    this.opts.beforeCall?.(method, this.calls);
    if (this.down) throw Object.assign(new Error(`fake: UNAVAILABLE: worker down (${method})`), { code: 14 });
    this.calls.push({ method, batch, detail });
  }

  private put(vec: Float64Array, recipe: Recipe): TensorRef {
    const handle = `h${++this.nextHandle}`;
    this.store.set(handle, { vec, recipe });
    return { handle, recipe };
  }

  private get(ref: TensorRef): Stored {
    const s = this.store.get(ref.handle);
    if (!s) throw new Error(`fake: NOT_FOUND handle ${ref.handle}${this.released.has(ref.handle) ? ' (released)' : ''}`);
    return s;
  }
}

function neighbourOf(n: Float64Array, tau: number, seed: string): Float64Array {
  const norm = Math.hypot(...n);
  const u = n.map((x) => x / norm);
  const g = normals(seed, n.length);
  const gu = dot(g, u);
  const w = unit(g.map((x, i) => x - gu * u[i]));
  return u.map((ui, i) => norm * (tau * ui + Math.sqrt(Math.max(0, 1 - tau * tau)) * w[i]));
}

function forwardOf(x: Float64Array, sigmaFrom: number, sigmaTo: number, seed: string): Float64Array {
  const c = (1 - sigmaTo) / (1 - sigmaFrom);
  const std = Math.sqrt(Math.max(0, sigmaTo ** 2 - c ** 2 * sigmaFrom ** 2));
  const z = normals(seed, x.length);
  return x.map((v, j) => c * v + std * z[j]);
}

/** A toy probability-flow step: deterministic, smooth, and order-preserving enough that good noises give good samples. */
function toyFlow(x: Float64Array, span: number, steps: number, guidance: number): Float64Array {
  const pull = span * (0.5 + 0.01 * Math.min(steps, 50)) * (1 + 0.1 * (guidance - 1));
  return x.map((v) => v + pull * (Math.tanh(v) - 0.3 * v));
}

/** The toy ODE; the stochastic solver adds fresh noise keyed by (noise seed, particle), none on a step to 0 (as the worker). */
function toySolve(x: Float64Array, span: number, solver: SolverSettings, sigmaTo: number, particle: number): Float64Array {
  const out = toyFlow(x, span, solver.steps, solver.guidanceScale!);
  if (solver.solver !== Solver.SOLVER_DDIM_ETA || sigmaTo === 0) return out;
  const z = normals(`ddim:${solver.noiseSeed ?? '0'}:${particle}`, x.length);
  return out.map((v, j) => v + 0.3 * (solver.eta ?? 1) * sigmaTo * z[j]);
}

function toyXPrediction(input: Float64Array, output: Float64Array, sigma: number): Float64Array {
  return output.map((o, j) => (1 - sigma) * o + sigma * 0.5 * input[j]);
}

/** N(0, 1) draws as a pure function of (seed, dim): a SHA-256 counter stream through Box-Muller. */
export function normals(seed: string, dim: number): Float64Array {
  const out = new Float64Array(dim);
  for (let i = 0; i < dim; i += 2) {
    const d = createHash('sha256').update(`${seed}/${i}`).digest();
    const u1 = (d.readUInt32BE(0) + 1) / 4294967297;
    const u2 = d.readUInt32BE(4) / 4294967296;
    const r = Math.sqrt(-2 * Math.log(u1));
    out[i] = r * Math.cos(2 * Math.PI * u2);
    if (i + 1 < dim) out[i + 1] = r * Math.sin(2 * Math.PI * u2);
  }
  return out;
}

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

export function cosine(a: Float64Array, b: Float64Array): number {
  return dot(a, b) / (Math.hypot(...a) * Math.hypot(...b));
}

function unit(v: Float64Array): Float64Array {
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
}

// `npm run search -- --class 7 --algorithm zero-order --budget 2000 ...`
// Talks to the PUBLIC gRPC API. Without --address it starts an orchestrator in this process, which
// spawns the Python worker, so one command runs a real search end to end.
import 'reflect-metadata';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import {
  FkPotential, Accounting, Candidate, Ensemble, Plan, Result, Round, SearchEvent, SearchRequest, VerifierScore,
} from '../gen/noisesearch/search/v1/search';
import { Recipe, Solver, SolverSettings } from '../gen/noisesearch/worker/v1/worker';
import { collect, searchClient } from './client';

export class UsageError extends Error {}

const OPTIONS = {
  address: { type: 'string', help: 'public gRPC API of a running orchestrator (default: start one in-process, spawning the Python worker)' },
  token: { type: 'string', help: 'bearer token for --address (default: $NOISESEARCH_TOKEN; the in-process orchestrator needs none)' },
  'tls-ca': { type: 'string', help: 'PEM CA file: speak TLS to --address, trusting this CA' },
  model: { type: 'string', default: 'sit-fmnist', help: 'model to sample from' },
  class: { type: 'string', help: 'class label to condition on (0-9 for sit-fmnist)' },
  prompt: { type: 'string', help: 'text prompt (text-to-image models only)' },
  unconditional: { type: 'boolean', help: 'no condition' },
  algorithm: { type: 'string', default: 'random', help: 'random | zero-order | paths | successive-halving | feynman-kac | rollover-budget' },
  n: { type: 'string', help: 'random: candidates (default 16); zero-order: neighbours per iteration (paper: 2 or 4; default 4); paths: kept paths (paper: 2 or 4; default 2)' },
  k: { type: 'string', help: 'zero-order: iterations (the scaling axis; default 8)' },
  m: { type: 'string', help: 'paths: children per kept path per round (the scaling axis; default 4)' },
  tau: { type: 'string', help: 'zero-order: cosine of each neighbour to the pivot (default 0.95)' },
  'max-rejections': { type: 'string', help: 'zero-order: rejected iterations in a row before a fresh pivot (default 3; 0 = never)' },
  'accept-non-improving': { type: 'boolean', help: 'zero-order: always move to the best neighbour (plain ZO; default: reject and redraw)' },
  'sigma-start': { type: 'string', help: 'paths: noise level the N paths are first solved to (default 0.9 = SiT time 0.1)' },
  'delta-forward': { type: 'string', help: 'paths: forward-noising step per round (default 0.05)' },
  'delta-backward': { type: 'string', help: 'paths: backward solve per round, must exceed --delta-forward (default 0.1)' },
  'backward-steps': { type: 'string', help: 'paths: solver steps per backward move (default 0 = the search solver\'s step density)' },
  rungs: { type: 'string', help: 'successive-halving: comma-separated sigma levels of the rungs, decreasing (default 0.7,0.4); --n noises (default 16)' },
  reduction: { type: 'string', help: 'successive-halving: the top 1/eta continue at each rung (default 2)' },
  'free-lookahead': { type: 'boolean', help: 'successive-halving: score the x-prediction of each segment\'s last evaluation (no NFE) instead of one at the rung' },
  potential: { type: 'string', help: 'feynman-kac: max | difference | sum (default max); --k particles (default 4)' },
  lambda: { type: 'string', help: 'feynman-kac: potential temperature (default 10)' },
  'resample-every': { type: 'string', help: 'feynman-kac: solver steps between resampling levels (default 2)' },
  'ess-threshold': { type: 'string', help: 'feynman-kac: resample when ESS < threshold * K, in (0, 1] (default 1)' },
  eta: { type: 'string', help: 'feynman-kac, rollover-budget: the stochastic solver\'s noise share in [0, 1] (default 1)' },
  nfes: { type: 'string', help: 'rollover-budget: its hard search budget (required; the scaling axis)' },
  'proposals-per-call': { type: 'string', help: 'rollover-budget: proposals drawn in one worker call (default 4)' },
  'initial-noises': { type: 'string', help: 'rollover-budget: start from the best of this many noises by their x-predictions\' reward at sigma 1 (default 1; the authors: 25 of 500 NFEs)' },
  verifier: { type: 'string', multiple: true, help: 'verifier name[:weight], repeatable (default: the model\'s supervised verifier, e.g. classifier-logit; others: feature-cosine, evaluator-logprob [held out])' },
  ensemble: { type: 'string', help: 'rank-average (the paper\'s, default) | zscore-sum | minmax-sum' },
  'select-with-held-out': { type: 'boolean', help: 'let held-out verifiers take part in selection (default: report only)' },
  budget: { type: 'string', help: 'search NFEs allowed (default 0 = no limit; final denoising is counted apart)' },
  shrink: { type: 'boolean', help: 'over budget: shrink the scaling axis (N, K or M) to fit instead of refusing' },
  solver: { type: 'string', help: 'search solver: heun | euler (default: the model\'s; paper SiT-XL: Heun)' },
  steps: { type: 'string', help: 'search solver steps of a full solve (default: the model\'s; paper SiT-XL: 25 = 49 NFEs)' },
  guidance: { type: 'string', help: 'search classifier-free guidance scale (default: the model\'s; 1 = none, paper SiT-XL: 1)' },
  'final-solver': { type: 'string', help: 'final solver: heun | euler (default: the search solver)' },
  'final-steps': { type: 'string', help: 'final solver steps (default: the search solver\'s; paper SiT-XL: 250 NFEs)' },
  'final-guidance': { type: 'string', help: 'final guidance scale (default: the search solver\'s)' },
  seed: { type: 'string', default: '0', help: 'every noise of the search derives from it' },
  outputs: { type: 'string', default: '1', help: 'best distinct samples to return' },
  upscale: { type: 'string', default: '4', help: 'nearest-neighbour upscale factor of the PNGs' },
  candidates: { type: 'boolean', help: 'include every candidate\'s scores in the JSON record' },
  'client-id': { type: 'string', help: 'worker namespace & accounting (default "anonymous")' },
  out: { type: 'string', default: 'out', help: 'folder for the PNG(s) and the JSON record' },
  quiet: { type: 'boolean', help: 'no progress bar' },
  help: { type: 'boolean', short: 'h', help: 'this text' },
} as const;

type Values = { [K in keyof typeof OPTIONS]?: (typeof OPTIONS)[K] extends { multiple: true } ? string[] : (typeof OPTIONS)[K]['type'] extends 'boolean' ? boolean : string };

export function usage(): string {
  const lines = Object.entries(OPTIONS).map(([name, o]) => {
    const flag = `--${name}${o.type === 'string' ? ' VALUE' : ''}`;
    const dflt = 'default' in o ? ` (default: ${o.default})` : '';
    return `  ${flag.padEnd(28)} ${o.help}${dflt}`;
  });
  return [
    'Inference-time search over diffusion sampling noises (Ma et al., 2025), judged by verifiers, under an NFE budget.',
    '',
    'usage: npm run search -- [--class 7] [--algorithm random|zero-order|paths] [--budget NFES] [options]',
    '',
    ...lines,
    '',
    'Writes out/<job>-rank<R>.png and out/<job>.json (plan, accounting, scores, recipes) and prints their paths.',
    'Without --address, NOISESEARCH_* environment variables configure the in-process orchestrator',
    '(e.g. NOISESEARCH_WORKER_ADDRESSES to use running workers, NOISESEARCH_PYTHON for the interpreter).',
  ].join('\n');
}

function int(flag: string, v: string | undefined, min = 0): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v.trim()) || Number(v) < min) throw new UsageError(`--${flag} must be an integer >= ${min}, got ${JSON.stringify(v)}`);
  return Number(v);
}

function num(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (v.trim() === '' || !Number.isFinite(x)) throw new UsageError(`--${flag} must be a number, got ${JSON.stringify(v)}`);
  return x;
}

function solverOf(flag: string, v: string | undefined): Solver {
  if (v === undefined) return Solver.SOLVER_UNSPECIFIED;
  const s = { heun: Solver.SOLVER_HEUN, euler: Solver.SOLVER_EULER }[v.toLowerCase()];
  if (s === undefined) throw new UsageError(`--${flag} must be heun or euler, got ${JSON.stringify(v)}`);
  return s;
}

function solverSettings(prefix: '' | 'final-', values: Values): SolverSettings | undefined {
  const solver = values[`${prefix}solver` as 'solver'];
  const steps = values[`${prefix}steps` as 'steps'];
  const guidance = values[`${prefix}guidance` as 'guidance'];
  if (solver === undefined && steps === undefined && guidance === undefined) return undefined;
  return {
    solver: solverOf(`${prefix}solver`, solver as string | undefined),
    steps: int(`${prefix}steps`, steps as string | undefined, 1) ?? 0,
    guidanceScale: num(`${prefix}guidance`, guidance as string | undefined),
  };
}

/** Command-line flags -> SearchRequest (flag errors are UsageErrors; the server validates the rest). */
export function buildRequest(argv: string[]): { request: SearchRequest; values: Values } {
  const { values: raw } = parseArgs({
    args: argv,
    options: Object.fromEntries(Object.entries(OPTIONS).map(([k, o]) => [k, {
      type: o.type,
      ...('multiple' in o ? { multiple: true } : {}),
      ...('short' in o ? { short: o.short } : {}),
      ...('default' in o ? { default: o.default } : {}),
    }])) as never,
    allowPositionals: false,
    strict: true,
  });
  const values = raw as Values;
  if (values.help) return { request: SearchRequest.fromPartial({}), values };
  const conditions = [values.class !== undefined, values.prompt !== undefined, !!values.unconditional].filter(Boolean).length;
  if (conditions > 1) throw new UsageError('give at most one of --class, --prompt, --unconditional');
  const condition = values.class !== undefined ? { classLabel: int('class', values.class) }
    : values.prompt !== undefined ? { prompt: values.prompt }
      : values.unconditional ? { unconditional: true } : undefined;

  const algorithm = (values.algorithm ?? 'random').toLowerCase().replace('_', '-');
  const req: Partial<SearchRequest> = {};
  if (algorithm === 'random') {
    req.random = { n: int('n', values.n) ?? 16 };
  } else if (algorithm === 'zero-order' || algorithm === 'zo') {
    req.zeroOrder = {
      n: int('n', values.n) ?? 4,
      k: int('k', values.k) ?? 8,
      tau: num('tau', values.tau),
      acceptNonImproving: !!values['accept-non-improving'],
      maxRejections: int('max-rejections', values['max-rejections']),
    };
  } else if (algorithm === 'paths') {
    req.paths = {
      n: int('n', values.n) ?? 2,
      m: int('m', values.m) ?? 4,
      sigmaStart: num('sigma-start', values['sigma-start']),
      deltaForward: num('delta-forward', values['delta-forward']),
      deltaBackward: num('delta-backward', values['delta-backward']),
      backwardSteps: int('backward-steps', values['backward-steps']) ?? 0,
    };
  } else if (algorithm === 'successive-halving' || algorithm === 'sh') {
    const rungs = values.rungs === undefined ? [] : values.rungs.split(',').map((s) => num('rungs', s)!);
    req.successiveHalving = { n: int('n', values.n) ?? 16, rungs, reduction: num('reduction', values.reduction), freeLookahead: !!values['free-lookahead'] };
  } else if (algorithm === 'feynman-kac' || algorithm === 'fk') {
    const potentials: Record<string, FkPotential> = { max: FkPotential.FK_POTENTIAL_MAX, difference: FkPotential.FK_POTENTIAL_DIFFERENCE, sum: FkPotential.FK_POTENTIAL_SUM };
    const potential = potentials[values.potential ?? 'max'];
    if (potential === undefined) throw new UsageError(`--potential must be max, difference or sum, got ${JSON.stringify(values.potential)}`);
    req.feynmanKac = {
      k: int('k', values.k) ?? 4, potential, lambda: num('lambda', values.lambda),
      resampleEvery: int('resample-every', values['resample-every']) ?? 0, essThreshold: num('ess-threshold', values['ess-threshold']), eta: num('eta', values.eta),
    };
  } else if (algorithm === 'rollover-budget' || algorithm === 'rbf') {
    if (values.nfes === undefined) throw new UsageError('--nfes is required for rollover-budget (its hard search budget)');
    req.rolloverBudget = { nfes: String(int('nfes', values.nfes, 1)), proposalsPerCall: int('proposals-per-call', values['proposals-per-call']) ?? 0, eta: num('eta', values.eta),
      initialNoises: int('initial-noises', values['initial-noises'], 1) };
  } else {
    throw new UsageError(`--algorithm must be random, zero-order, paths, successive-halving, feynman-kac or rollover-budget, got ${JSON.stringify(values.algorithm)}`);
  }
  const verifiers = (values.verifier ?? []).map((spec) => {
    const [name, weight] = spec.split(':');
    if (!name) throw new UsageError(`--verifier expects name[:weight], got ${JSON.stringify(spec)}`);
    return { name, weight: num('verifier weight', weight) ?? 0 };
  });
  const ensembles: Record<string, Ensemble> = {
    'rank-average': Ensemble.ENSEMBLE_RANK_AVERAGE, 'zscore-sum': Ensemble.ENSEMBLE_ZSCORE_SUM, 'minmax-sum': Ensemble.ENSEMBLE_MINMAX_SUM,
  };
  if (values.ensemble !== undefined && !(values.ensemble in ensembles)) {
    throw new UsageError(`--ensemble must be one of ${Object.keys(ensembles).join(', ')}, got ${JSON.stringify(values.ensemble)}`);
  }
  const budget = values.budget;
  if (budget !== undefined && !/^\d+$/.test(budget.trim())) {
    throw new UsageError(`--budget (budget_nfes) must be a non-negative integer, got ${JSON.stringify(budget)}`);
  }
  const seed = values.seed ?? '0';
  if (!/^\d+$/.test(seed) || BigInt(seed) >= 1n << 64n) throw new UsageError(`--seed must be a uint64, got ${JSON.stringify(seed)}`);
  const request = SearchRequest.fromPartial({
    ...req,
    model: values.model ?? '',
    condition,
    verifiers,
    ensemble: values.ensemble ? ensembles[values.ensemble] : Ensemble.ENSEMBLE_UNSPECIFIED,
    selectWithHeldOut: !!values['select-with-held-out'],
    budgetNfes: budget?.trim() ?? '0',
    shrinkToFit: !!values.shrink,
    searchSolver: solverSettings('', values),
    finalSolver: solverSettings('final-', values),
    seed,
    numOutputs: int('outputs', values.outputs, 1) ?? 1,
    return: { png: true, rawTensor: false, candidateScores: !!values.candidates, pngUpscale: int('upscale', values.upscale, 1) ?? 1 },
    clientId: values['client-id'] ?? '',
  } as SearchRequest);
  return { request, values };
}

/** Plain TTY progress: one rewritten line on a TTY, one line per round otherwise. */
export class Progress {
  private plan?: Plan;
  private rounds = 0;
  private readonly t0 = Date.now();
  constructor(private readonly out: NodeJS.WriteStream, private readonly enabled: boolean) {}

  onEvent(e: SearchEvent): void {
    if (!this.enabled) return;
    if (e.plan) {
      this.plan = e.plan;
      const p = e.plan;
      this.out.write(`job ${e.jobId}: ${p.algorithm} n=${p.n}${p.k ? ` k=${p.k}` : ''}${p.m ? ` m=${p.m}` : ''}, ${p.rounds} rounds, ` +
        `${p.searchNfes} search + ${p.finalNfes} final NFEs${p.shrunk ? ` (shrunk ${p.shrunkAxis} from ${p.requestedAxisValue})` : ''}\n`);
    } else if (e.round) {
      this.rounds++;
      this.render(e.round);
    } else if (e.result && this.out.isTTY) {
      this.out.write('\n');
    }
  }

  private render(r: Round): void {
    const total = this.plan?.rounds || 1;
    const width = 30;
    const filled = Math.min(width, Math.round((this.rounds / total) * width));
    const best = r.bestScores.filter((s) => !s.heldOut).map((s) => `${s.verifier}=${s.score.toFixed(3)}`).join(' ');
    const secs = ((Date.now() - this.t0) / 1000).toFixed(1);
    const line = `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${this.rounds}/${total} rounds ` +
      `${r.nfesSpent}/${this.plan?.searchNfes ?? '?'} NFEs  best ${best}  ${secs}s${r.note ? `  (${r.note})` : ''}`;
    if (this.out.isTTY) this.out.write(`\r${line.slice(0, Math.max(20, (this.out.columns ?? 120) - 1))}\x1b[K`);
    else this.out.write(`${line}\n`);
  }
}

const scoresJson = (s: VerifierScore[]) => Object.fromEntries(s.map((x) => [x.verifier, x.score]));

/** Writes the PNG(s) and the JSON record; returns their paths. */
export function writeOutputs(outDir: string, jobId: string, request: SearchRequest, events: SearchEvent[]): string[] {
  const result = events.find((e) => e.result)?.result as Result;
  fs.mkdirSync(outDir, { recursive: true });
  const files: string[] = [];
  const outputs = result.outputs.map((o) => {
    const file = path.join(outDir, `${jobId}-rank${o.rank}.png`);
    fs.writeFileSync(file, o.png);
    files.push(file);
    return {
      rank: o.rank,
      png: path.basename(file),
      candidateId: o.candidateId,
      scores: scoresJson(o.scores),
      recipe: o.recipe ? Recipe.toJSON(o.recipe) : null,
      searchRecipe: o.searchRecipe ? Recipe.toJSON(o.searchRecipe) : null,
    };
  });
  const record = {
    jobId,
    request: SearchRequest.toJSON(request),
    plan: result.plan ? Plan.toJSON(result.plan) : Plan.toJSON(events[0].plan!),
    accounting: result.accounting ? Accounting.toJSON(result.accounting) : null,
    wallSeconds: result.wallSeconds,
    outputs,
    rounds: events.filter((e) => e.round).map((e) => {
      const r = e.round!;
      return { round: r.round, nfesSpent: r.nfesSpent, sigma: r.sigma, best: scoresJson(r.bestScores), kept: r.kept, note: r.note };
    }),
    candidates: result.candidates.map((c) => ({ ...(Candidate.toJSON(c) as object), scores: scoresJson(c.scores) })),
  };
  const json = path.join(outDir, `${jobId}.json`);
  fs.writeFileSync(json, `${JSON.stringify(record, null, 2)}\n`);
  files.push(json);
  return files;
}

export async function main(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof buildRequest>;
  try {
    parsed = buildRequest(argv);
  } catch (e) {
    process.stderr.write(`error: ${(e as Error).message}\n\n${usage()}\n`);
    return 2;
  }
  const { request, values } = parsed;
  if (values.help) {
    process.stdout.write(`${usage()}\n`);
    return 0;
  }
  let close = async () => undefined as void;
  let address = values.address;
  if (!address) {
    process.stderr.write('starting the orchestrator and its worker...\n');
    const { startOrchestrator } = await import('../main');
    const { loadConfig } = await import('../config/config');
    const orch = await startOrchestrator(loadConfig(process.env, { grpcAddress: '127.0.0.1:0', httpPort: 0 }), { logger: ['fatal', 'error', 'warn'] });
    address = orch.grpcAddress;
    close = () => orch.close();
  }
  const client = searchClient(address, {
    token: values.token,
    tls: values['tls-ca'] ? fs.readFileSync(values['tls-ca']) : undefined,
  });
  const progress = new Progress(process.stderr, !values.quiet);
  const call = client.search(request);
  const onSigint = () => call.cancel();
  process.once('SIGINT', onSigint);
  try {
    const events = await collect(call, (e) => progress.onEvent(e));
    const jobId = events[0]?.jobId ?? 'job';
    for (const f of writeOutputs(values.out ?? 'out', jobId, request, events)) process.stdout.write(`${f}\n`);
    return 0;
  } catch (e) {
    const err = e as grpc.ServiceError;
    process.stderr.write(`\nerror: ${grpc.status[err.code] ?? 'ERROR'}: ${err.details ?? err.message}\n`);
    return err.code === grpc.status.INVALID_ARGUMENT || err.code === grpc.status.RESOURCE_EXHAUSTED ? 2 : 1;
  } finally {
    process.removeListener('SIGINT', onSigint);
    client.close();
    await close();
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => process.exit(code), (e) => {
    process.stderr.write(`error: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
}

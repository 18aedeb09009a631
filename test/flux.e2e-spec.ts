// End to end on the paper's text-to-image path, tiny: the real Nest app spawns the real Python worker serving a
// tiny random FLUX.1-dev-style release (diffusers folder, CLIP + T5 text towers, 16x16 images) and the three
// text-to-image verifiers (LAION aesthetic, CLIPScore, ImageReward) from tiny random releases in their real
// layouts, written by `python -m noisesearch_worker.testing.make_tiny_flux`. Searches use a prompt condition and
// the rank ensemble of the three verifiers. FLUX's guidance (3.5) is a model input: one NFE per step.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Ensemble, Result, SearchEvent, SearchRequest } from '../src/gen/noisesearch/search/v1/search';
import { Solver } from '../src/gen/noisesearch/worker/v1/worker';
import { WorkerRpc } from '../src/worker/worker-rpc';
import { api, kindOf } from '../src/cli/client';
import { Local, startLocal } from './ops-util';

jest.setTimeout(180_000);

const ROOT = resolve(__dirname, '..');
const PYTHON = process.env.NOISESEARCH_PYTHON || join(ROOT, 'python-worker/.venv/bin/python');
const MODEL = 'flux-tiny';
const PROMPT = 'a photo of a red car';
const VERIFIERS = ['aesthetic', 'clip-score', 'image-reward'];
const STEPS = 4; // the tiny model's default solver: Euler 4 steps, guidance 3.5

function request(partial: Partial<SearchRequest>): SearchRequest {
  return SearchRequest.fromPartial({
    model: MODEL,
    condition: { prompt: PROMPT },
    verifiers: VERIFIERS.map((name) => ({ name, weight: 1 })),
    ensemble: Ensemble.ENSEMBLE_RANK_AVERAGE,
    seed: '20250110',
    return: { png: true, candidateScores: true },
    ...partial,
  } as SearchRequest);
}

const REQUESTS: Record<string, SearchRequest> = {
  random: request({ random: { n: 4 }, budgetNfes: String(4 * STEPS) }),
  zero_order: request({ zeroOrder: { n: 2, k: 2, acceptNonImproving: false }, budgetNfes: String(2 * 2 * STEPS) }),
};

let dir: string;
let local: Local;
let client: ReturnType<typeof api>;
let wr: WorkerRpc;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'noisesearch-flux-'));
  const out = execFileSync(PYTHON, ['-m', 'noisesearch_worker.testing.make_tiny_flux', dir, '--threads', '2'], {
    cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'],
  });
  const config = out.trim().split('\n').pop()!;
  local = await startLocal({ maxRunningJobs: 1 }, { ...process.env, NOISESEARCH_WORKER_ARGS: `--config ${config}` });
  ({ client, worker: wr } = local);
}, 150_000);

afterAll(async () => {
  await local?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

it('the worker serves the tiny FLUX as a prompt model with embedded guidance and the three prompt verifiers', async () => {
  const d = await wr.call('describe', {});
  const m = d.models.find((x) => x.name === MODEL)!;
  expect(m).toMatchObject({ family: 'flux', acceptsPrompt: true, guidanceEmbedded: true, numClasses: 0 });
  expect(m.defaultSolver).toMatchObject({ solver: Solver.SOLVER_EULER, steps: STEPS, guidanceScale: 3.5 });
  expect(d.verifiers.map((v) => [v.name, v.needsPrompt])).toEqual([
    ['aesthetic', false], ['clip-score', true], ['image-reward', true],
  ]);
});

describe.each(Object.keys(REQUESTS))('%s search with the rank ensemble of the three verifiers', (algorithm) => {
  const req = REQUESTS[algorithm];
  let events: SearchEvent[];
  let result: Result;

  beforeAll(async () => {
    events = await client.search(req);
    result = events[events.length - 1].result!;
  });

  it('plans at one NFE per step (guidance is a model input), and accounts exactly the plan, within the budget', () => {
    const kinds = events.map(kindOf);
    expect(kinds[0]).toBe('plan');
    expect(kinds[kinds.length - 1]).toBe('result');
    const plan = events[0].plan!;
    expect(plan.request?.condition).toEqual({ prompt: PROMPT });
    expect(plan.request?.searchSolver).toMatchObject({ solver: Solver.SOLVER_EULER, steps: STEPS, guidanceScale: 3.5 });
    expect(plan.nfesPerCandidate).toBe(String(STEPS));
    expect(plan.searchNfes).toBe(req.budgetNfes);
    expect(plan.selectionVerifiers).toEqual(VERIFIERS);
    const acc = result.accounting!;
    expect(acc.searchNfes).toBe(plan.searchNfes);
    expect(acc.plannedSearchNfes).toBe(plan.searchNfes);
    expect(acc.finalNfes).toBe(plan.finalNfes);
    expect(BigInt(acc.searchNfes)).toBeLessThanOrEqual(BigInt(req.budgetNfes));
  });

  it('returns a 16x16 PNG with a score from each verifier, the best candidate by mean rank', () => {
    const out = result.outputs[0];
    expect(out.png.subarray(1, 4).toString()).toBe('PNG');
    expect(out.png.readUInt32BE(16)).toBe(16); // IHDR width
    expect(out.png.readUInt32BE(20)).toBe(16); // IHDR height
    expect(out.scores.map((s) => s.verifier).sort()).toEqual([...VERIFIERS].sort());
    for (const s of out.scores) expect(Number.isFinite(s.score)).toBe(true);
    // Within the final round, the kept candidate has the best ensemble (mean-rank) score.
    const last = Math.max(...result.candidates.map((c) => c.round));
    const round = result.candidates.filter((c) => c.round === last);
    expect(round.length).toBeGreaterThan(1);
    for (const c of round) expect(c.scores.map((s) => s.verifier).sort()).toEqual([...VERIFIERS].sort());
    const best = round.reduce((a, b) => (b.ensembleScore > a.ensembleScore ? b : a));
    expect(out.candidateId).toBe(best.id);
  });

  it('is deterministic: the same request gives identical PNG bytes', async () => {
    const again = await client.search(req);
    const r2 = again[again.length - 1].result!;
    expect(Buffer.compare(r2.outputs[0].png, result.outputs[0].png)).toBe(0);
    expect(r2.outputs[0].scores).toEqual(result.outputs[0].scores);
  });
});

it('refuses a class label for the prompt model, naming the field', async () => {
  const err = await client.search(request({ condition: { classLabel: 1 }, random: { n: 2 } })).catch((e) => e);
  expect(String(err.details ?? err.message)).toContain('condition');
});

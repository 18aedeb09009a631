import fc from 'fast-check';
import type { Result, Round, SearchRequest } from '../gen/noisesearch/search/v1/search';
import { Recipe, Solver } from '../gen/noisesearch/worker/v1/worker';
import { DEFAULT_LIMITS } from './catalog';
import { CHECKPOINT_VERSION, decodeCheckpoint, encodeCheckpoint, type SearchCheckpoint } from './checkpoint';
import { recipeNfes } from './nfe';
import { runSearch } from './run-search';
import { FAKE_CATALOG, FakeWorker } from './testing/fake-worker';
import { request } from './testing/requests';

const euler = (steps: number, guidanceScale = 1) => ({ solver: Solver.SOLVER_EULER, steps, guidanceScale });

interface Run {
  result: Result;
  rounds: Round[];
  checkpoints: SearchCheckpoint[];
  worker: FakeWorker;
}

async function run(req: SearchRequest, opts: { resumeAt?: { checkpoint: SearchCheckpoint; rounds: Round[] }; crashAtCall?: number } = {}): Promise<Run> {
  const rounds: Round[] = [];
  const checkpoints: SearchCheckpoint[] = [];
  let crashed = false;
  const worker: FakeWorker = new FakeWorker({
    condition: req.condition,
    beforeCall: (_method, calls) => {
      if (!crashed && opts.crashAtCall !== undefined && calls.length === opts.crashAtCall) {
        crashed = true;
        worker.crash();
      }
    },
  });
  const result = await runSearch(worker, req, FAKE_CATALOG, DEFAULT_LIMITS, {
    // Through the same JSON a store keeps.
    onRound: (r, cp) => { rounds.push(r); checkpoints.push(decodeCheckpoint(encodeCheckpoint(cp))); },
  }, new AbortController().signal, {
    resume: opts.resumeAt,
    recover: async () => { worker.restart(); return worker; },
  });
  return { result, rounds, checkpoints, worker };
}

/** Requests the plan refuses (e.g. more outputs than final candidates) are not this test's business. */
async function runOrSkip(req: SearchRequest): Promise<Run | undefined> {
  try {
    return await run(req);
  } catch (e) {
    if ((e as { code?: string }).code === 'INVALID_ARGUMENT') return undefined;
    throw e;
  }
}

/** Everything but wall time, worker calls and recovery NFEs (the latter two differ by design). */
function comparable(r: Result) {
  const { wallSeconds: _w, accounting, ...rest } = r;
  const { workerCalls: _c, recoveryNfes: _r, totalNfes: _t, ...acc } = accounting!;
  return { ...rest, accounting: acc };
}

const algorithmArb = fc.oneof(
  fc.record({ random: fc.record({ n: fc.integer({ min: 1, max: 6 }) }) }),
  fc.record({
    zeroOrder: fc.record({
      n: fc.integer({ min: 1, max: 3 }), k: fc.integer({ min: 1, max: 6 }), tau: fc.constantFrom(0.6, 0.95),
      acceptNonImproving: fc.boolean(), maxRejections: fc.integer({ min: 0, max: 2 }),
    }),
  }),
  fc.record({
    paths: fc.record({
      n: fc.integer({ min: 1, max: 3 }), m: fc.integer({ min: 1, max: 3 }), sigmaStart: fc.constantFrom(0.3, 0.5),
      deltaForward: fc.constantFrom(0.05, 0.1), deltaBackward: fc.constantFrom(0.15, 0.2), backwardSteps: fc.integer({ min: 0, max: 2 }),
    }),
  }),
);

const requestArb = fc.record({
  alg: algorithmArb,
  numOutputs: fc.integer({ min: 1, max: 3 }),
  verifiers: fc.boolean().map((two) => (two ? [{ name: 'supervised', weight: 1 }, { name: 'self-supervised', weight: 1 }] : [])),
  finalSolver: fc.option(fc.constantFrom(euler(5), euler(3, 2)), { nil: undefined }),
  seed: fc.bigInt({ min: 0n, max: 1n << 40n }),
}).map(({ alg, numOutputs, verifiers, finalSolver, seed }) => request({
  ...alg, numOutputs, verifiers, searchSolver: euler(4), finalSolver: 'paths' in alg ? undefined : finalSolver, seed: seed.toString(),
  return: { png: true, rawTensor: false, candidateScores: true, pngUpscale: 1 },
}));

describe('resume from a checkpoint', () => {
  it('PROPERTY: resuming after any round gives the uninterrupted result, rounds and account', async () => {
    await fc.assert(fc.asyncProperty(requestArb, async (req) => {
      const whole = await runOrSkip(req);
      if (!whole) return;
      expect(whole.checkpoints).toHaveLength(whole.rounds.length);
      for (let k = 0; k < whole.checkpoints.length; k++) {
        const resumed = await run(req, { resumeAt: { checkpoint: whole.checkpoints[k], rounds: whole.rounds.slice(0, k + 1) } });
        expect(comparable(resumed.result)).toEqual(comparable(whole.result));
        expect(resumed.rounds).toEqual(whole.rounds.slice(k + 1));
        expect(resumed.checkpoints.map((c) => c.rounds)).toEqual(whole.checkpoints.slice(k + 1).map((c) => c.rounds));
        const a = resumed.result.accounting!;
        expect(a.searchNfes).toBe(resumed.result.plan!.searchNfes);
        expect(Number(a.totalNfes)).toBe(Number(a.searchNfes) + Number(a.finalNfes) + Number(a.recoveryNfes));
        // Only what is needed is rebuilt, in one Materialize call per use.
        expect(resumed.worker.countOf('materialize')).toBeLessThanOrEqual(resumed.worker.calls.length);
        expect(resumed.worker.liveHandles()).toBe(0);
        expect(resumed.worker.doubleReleases).toEqual([]);
      }
    }), { numRuns: 40 });
  });

  it('rebuilds the restored tensors from their recipes and reports their NFEs as recovery', async () => {
    const req = request({ zeroOrder: { n: 2, k: 4, acceptNonImproving: false, tau: 0.95, maxRejections: 3 }, searchSolver: euler(4), finalSolver: euler(6) });
    const whole = await run(req);
    const resumed = await run(req, { resumeAt: { checkpoint: whole.checkpoints[1], rounds: whole.rounds.slice(0, 2) } });
    expect(resumed.worker.calls[0].method).toBe('materialize'); // the pivot, rebuilt before the next neighbourhood
    expect(whole.result.accounting!.recoveryNfes).toBe('0');
    // The pivot is a neighbour noise (free to rebuild); later the chosen noises are rebuilt for the final solve: free too.
    expect(resumed.result.accounting!.recoveryNfes).toBe('0');
    expect(resumed.result.outputs[0].png).toEqual(whole.result.outputs[0].png);

    // Path search needs its kept partial samples: rebuilding them replays their solves.
    const preq = request({ paths: { n: 2, m: 2, sigmaStart: 0.5, deltaForward: 0.1, deltaBackward: 0.2, backwardSteps: 0 }, searchSolver: euler(4) });
    const pw = await run(preq);
    const cp = pw.checkpoints[2];
    const kept = (cp.state as { kept: { sample: { recipe: unknown } }[] }).kept;
    const expected = kept.reduce((s, k) => s + recipeNfes(Recipe.fromJSON(k.sample.recipe)), 0);
    expect(expected).toBeGreaterThan(0);
    const pr = await run(preq, { resumeAt: { checkpoint: cp, rounds: pw.rounds.slice(0, 3) } });
    expect(pr.result.accounting!.recoveryNfes).toBe(String(expected));
    expect(comparable(pr.result)).toEqual(comparable(pw.result));
  });

  it('refuses a checkpoint of another plan', async () => {
    const req = request({ random: { n: 3 } });
    const whole = await run(req);
    const other = request({ random: { n: 4 } });
    await expect(run(other, { resumeAt: { checkpoint: whole.checkpoints[0], rounds: whole.rounds } })).rejects.toMatchObject({ code: 'FAILED_PRECONDITION' });
  });

  it('keeps NaN, infinities and -0 exactly through the checkpoint encoding', () => {
    const cp: SearchCheckpoint = {
      version: CHECKPOINT_VERSION, algorithm: 'random', round: 1, rounds: 1, plannedSearchNfes: 4, workerCalls: 3,
      ledger: { searchNfes: 4, verifierCalls: 2, recoveryNfes: 0 },
      state: { scores: { a: NaN, b: Infinity, c: -Infinity, d: -0, e: 0.1 + 0.2, f: 5e-324 } },
    };
    const back = decodeCheckpoint(encodeCheckpoint(cp));
    const s = (back.state as { scores: Record<string, number> }).scores;
    expect(Number.isNaN(s.a)).toBe(true);
    expect([s.b, s.c, s.e, s.f]).toEqual([Infinity, -Infinity, 0.1 + 0.2, 5e-324]);
    expect(Object.is(s.d, -0)).toBe(true);
    expect(() => decodeCheckpoint(JSON.stringify({ ...cp, version: 99 }))).toThrow(/version/);
  });
});

describe('worker faults', () => {
  it('PROPERTY: a worker that dies at any call is replaced; the result is identical and the account equals the plan', async () => {
    await fc.assert(fc.asyncProperty(requestArb, fc.nat(), async (req, at) => {
      const whole = await runOrSkip(req);
      if (!whole) return;
      const crashAt = 1 + (at % (whole.worker.calls.length - 1)); // after the first call, at any later one
      const faulty = await run(req, { crashAtCall: crashAt });
      expect(comparable(faulty.result)).toEqual(comparable(whole.result));
      expect(faulty.rounds).toEqual(whole.rounds);
      const a = faulty.result.accounting!;
      expect(a.searchNfes).toBe(faulty.result.plan!.searchNfes);
      expect(Number(a.totalNfes)).toBe(Number(a.searchNfes) + Number(a.finalNfes) + Number(a.recoveryNfes));
      expect(faulty.worker.liveHandles()).toBe(0);
    }), { numRuns: 60 });
  });

  it('reports the NFEs of the repeated call and of the rebuilds', async () => {
    const req = request({ paths: { n: 2, m: 2, sigmaStart: 0.5, deltaForward: 0.1, deltaBackward: 0.2, backwardSteps: 0 }, searchSolver: euler(4) });
    const whole = await run(req);
    // Crash at the second denoise (round 1's backward solve): its inputs (forward-noised kept samples) are rebuilt
    // by replaying round 0's solve, and the solve itself runs again.
    const denoiseCalls = whole.worker.calls.map((c, i) => [c.method, i] as const).filter(([m]) => m === 'denoise');
    const at = denoiseCalls[1][1];
    const faulty = await run(req, { crashAtCall: at });
    const rebuilt = (faulty.worker.calls.find((c) => c.method === 'materialize')!).batch;
    expect(rebuilt).toBe(4); // n x m forward-noised children
    const roundZeroPerSample = 2; // euler(4) over 1 -> 0.5
    const repeated = Number(whole.rounds[1].nfesSpent) - Number(whole.rounds[0].nfesSpent) - 4; // round 1's solve (minus its x-predictions)
    expect(faulty.result.accounting!.recoveryNfes).toBe(String(4 * roundZeroPerSample + repeated));
    expect(comparable(faulty.result)).toEqual(comparable(whole.result));
  });

  it('gives up when recovery is refused or faults repeat', async () => {
    const req = request({ random: { n: 2 } });
    const worker = new FakeWorker({ beforeCall: (m) => { if (m === 'denoise') worker.crash(); } });
    await expect(runSearch(worker, req, FAKE_CATALOG, DEFAULT_LIMITS, {}, new AbortController().signal, {
      recover: async () => { worker.restart(); return worker; },
    })).rejects.toThrow(/UNAVAILABLE/);
    const w2 = new FakeWorker({ beforeCall: (m) => { if (m === 'denoise') w2.crash(); } });
    await expect(runSearch(w2, req, FAKE_CATALOG, DEFAULT_LIMITS, {}, new AbortController().signal, {
      recover: async () => undefined,
    })).rejects.toThrow(/UNAVAILABLE/);
    expect(w2.calls.some((c) => c.method === 'decode')).toBe(false);
  });
});

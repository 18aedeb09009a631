// The step runner with small algorithms written against the contract (step.ts): handle lifetimes
// (resampling by reuse, release of what the state drops), accounting and round events.
import type { Round } from '../gen/noisesearch/search/v1/search';
import { Solver } from '../gen/noisesearch/worker/v1/worker';
import { NfeLedger } from './budget';
import { DEFAULT_LIMITS } from './catalog';
import type { SavedRef } from './checkpoint';
import { prepareSearch } from './plan';
import { ResilientPort } from './resilient-port';
import { StepRunner } from './runner';
import { outputOf, type Chosen, type StepAlgorithm } from './step';
import { FAKE_CATALOG, FakeWorker } from './testing/fake-worker';
import { request } from './testing/requests';

const euler = (steps: number) => ({ solver: Solver.SOLVER_EULER, steps, guidanceScale: 1 });

interface ParticleState {
  step: number;
  particles: SavedRef[];
  chosen?: Chosen[];
}

/** Two noises to sigma 0.5; resample [0, 0, 1] (a handle listed twice, no copy); all three to 0; scored. */
const resampling: StepAlgorithm<ParticleState> = {
  name: 'resampling',
  init: () => ({ step: 0, particles: [] }),
  propose(s) {
    if (s.chosen) return { done: true, chosen: s.chosen };
    if (s.step === 0) {
      return { done: false, actions: [
        { kind: 'noises', id: 'noises', seeds: ['1', '2'] },
        { kind: 'solve', id: 'solve', inputs: [outputOf('noises', 0), outputOf('noises', 1)], sigmaFrom: 1, sigmaTo: 0.5, releaseInputs: true },
      ] };
    }
    return { done: false, actions: [
      { kind: 'solve', id: 'solve', inputs: s.particles, sigmaFrom: 0.5, sigmaTo: 0 },
      { kind: 'score', id: 'score', samples: s.particles.map((_, i) => outputOf('solve', i)) },
    ] };
  },
  observe(s, _spec, results) {
    if (s.step === 0) {
      const [a, b] = results.solve.outputs;
      return { state: { step: 1, particles: [a, a, b] }, round: { round: 1, sigma: 0.5, best: {}, kept: [], candidates: [], note: 'resampled' } };
    }
    const scores = results.score.scores!;
    const chosen = results.solve.outputs.map((sample, i) => ({ id: `p${i}`, round: 2, sample, scores: { supervised: scores.supervised[i] } }));
    return { state: { ...s, step: 2, chosen: chosen.slice(0, 1) }, round: { round: 2, sigma: 0, best: chosen[0].scores, kept: ['p0'], candidates: [], note: 'done' } };
  },
};

function setup() {
  const worker = new FakeWorker({ condition: { classLabel: 3 } });
  const port = new ResilientPort(worker);
  const { spec } = prepareSearch(request({ random: { n: 1 }, searchSolver: euler(4) }), FAKE_CATALOG, DEFAULT_LIMITS);
  const ledger = new NfeLedger(1000, 0);
  const rounds: Round[] = [];
  const states: unknown[] = [];
  const runner = new StepRunner({
    port, catalog: FAKE_CATALOG, spec, ledger, signal: new AbortController().signal,
    onRound: async (r, st) => { await Promise.resolve(); rounds.push(r); states.push(st); },
  });
  return { worker, runner, ledger, rounds, states };
}

describe('StepRunner', () => {
  it('resamples by reusing handles, releases what the state drops, and accounts every action', async () => {
    const { worker, runner, ledger, rounds, states } = setup();
    const out = await runner.run(resampling, resampling.init({} as never));
    const solves = worker.calls.filter((c) => c.method === 'denoise');
    expect(solves.map((c) => c.batch)).toEqual([2, 3]); // the resampled particle went in twice, never copied
    expect(ledger.searchNfes).toBe(2 * 2 + 3 * 2); // Euler 4: 2 steps per half
    expect(rounds.map((r) => [r.round, r.nfesSpent, r.note])).toEqual([[1, '4', 'resampled'], [2, '10', 'done']]);
    expect(rounds[1].verifierCalls).toBe('3');
    expect(rounds[1].verifierSeconds).toBeGreaterThan(0);
    expect(JSON.parse(JSON.stringify(states[0]))).toEqual(states[0]); // the checkpoint is the JSON-safe state
    expect(out.chosen.map((c) => c.id)).toEqual(['p0']);
    // Only the chosen sample is still held; nothing was released twice.
    expect(worker.liveHandles()).toBe(1);
    expect(worker.doubleReleases).toEqual([]);
  });

  it('refuses a state that keeps a tensor the worker freed (release_inputs)', async () => {
    const { runner } = setup();
    const keepsFreed: StepAlgorithm<{ kept?: SavedRef }> = {
      name: 'keeps-freed',
      init: () => ({}),
      propose: () => ({ done: false, actions: [
        { kind: 'noises', id: 'n', seeds: ['1'] },
        { kind: 'solve', id: 's', inputs: [outputOf('n', 0)], sigmaFrom: 1, sigmaTo: 0.5, releaseInputs: true },
      ] }),
      observe: (_s, _spec, r) => ({ state: { kept: r.n.outputs[0] } }),
    };
    await expect(runner.run(keepsFreed, {})).rejects.toMatchObject({ code: 'INTERNAL' });
  });

  it('stops between steps when the signal fires', async () => {
    const worker = new FakeWorker({ condition: { classLabel: 3 } });
    const ctl = new AbortController();
    const { spec } = prepareSearch(request({ random: { n: 1 }, searchSolver: euler(4) }), FAKE_CATALOG, DEFAULT_LIMITS);
    const runner = new StepRunner({
      port: new ResilientPort(worker), catalog: FAKE_CATALOG, spec, ledger: new NfeLedger(1000, 0), signal: ctl.signal,
      onRound: () => ctl.abort(),
    });
    await expect(runner.run(resampling, resampling.init(spec))).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(worker.countOf('denoise')).toBe(1);
  });
});

/** Deep-frozen copies: an algorithm that mutates its arguments throws. */
function frozen<T>(x: T): T {
  const copy = structuredClone(x);
  const freeze = (v: unknown) => {
    if (v && typeof v === 'object') { Object.freeze(v); Object.values(v).forEach(freeze); }
  };
  freeze(copy);
  return copy;
}

describe('the shipped algorithms are pure step functions', () => {
  const cases = {
    random: { random: { n: 4 }, numOutputs: 2 },
    zero_order: { zeroOrder: { n: 2, k: 4, acceptNonImproving: false, tau: 0.9, maxRejections: 1 }, numOutputs: 2 },
    paths: { paths: { n: 2, m: 2, sigmaStart: 0.5, deltaForward: 0.1, deltaBackward: 0.2, backwardSteps: 0 } },
  };
  it.each(Object.entries(cases))('%s: same state -> same proposal, arguments never mutated, results identical to the unwrapped run', async (name, fields) => {
    const { ALGORITHMS } = await import('./registry');
    const algo = ALGORITHMS[name as keyof typeof ALGORITHMS];
    const wrapped: StepAlgorithm<unknown> = {
      name: algo.name,
      init: (spec) => algo.init(spec),
      propose(state, spec) {
        const a = algo.propose(frozen(state), frozen(spec));
        expect(algo.propose(frozen(state), frozen(spec))).toEqual(a);
        return a;
      },
      observe: (state, spec, results) => algo.observe(frozen(state), frozen(spec), frozen(results)),
    };
    const go = async (a: StepAlgorithm<unknown>) => {
      const worker = new FakeWorker({ condition: { classLabel: 3 } });
      const { spec, plan } = prepareSearch(request({ ...fields, searchSolver: euler(4) }), FAKE_CATALOG, DEFAULT_LIMITS);
      const rounds: Round[] = [];
      const runner = new StepRunner({
        port: new ResilientPort(worker), catalog: FAKE_CATALOG, spec, ledger: new NfeLedger(Number(plan.searchNfes), 0),
        signal: new AbortController().signal, onRound: (r) => rounds.push(r),
      });
      const out = await runner.run(a, a.init(spec));
      return { out, rounds };
    };
    const plain = await go(algo);
    const checked = await go(wrapped);
    expect(checked).toEqual(plain);
  });
});

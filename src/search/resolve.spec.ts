import fc from 'fast-check';
import { Ensemble, type SearchRequest } from '../gen/noisesearch/search/v1/search';
import { Solver } from '../gen/noisesearch/worker/v1/worker';
import { DEFAULT_LIMITS, catalogFromDescribe } from './catalog';
import { SearchError } from './errors';
import { resolveRequest } from './resolve';
import { runSearch } from './run-search';
import { FAKE_CATALOG, FakeWorker } from './testing/fake-worker';
import type { DenoiseCall, TensorRef } from './worker-port';
import { request } from './testing/requests';

const resolve = (r: SearchRequest) => resolveRequest(r, FAKE_CATALOG, DEFAULT_LIMITS);

function refusal(r: SearchRequest): SearchError {
  try {
    resolve(r);
  } catch (e) {
    return e as SearchError;
  }
  throw new Error('expected a refusal');
}

describe('resolveRequest: defaults', () => {
  it('fills every default', () => {
    const r = resolve(request({ random: { n: 4 } }));
    expect(r.model.name).toBe('sit-fmnist');
    expect(r.selection).toEqual([{ name: 'supervised', weight: 1 }]);
    expect(r.reported).toEqual(['heldout']);
    expect(r.ensemble).toBe(Ensemble.ENSEMBLE_RANK_AVERAGE);
    expect(r.searchSolver).toEqual({ solver: Solver.SOLVER_HEUN, steps: 10, guidanceScale: 1 });
    expect(r.finalSolver).toEqual(r.searchSolver);
    expect(r.numOutputs).toBe(1);
    expect(r.returnOptions).toEqual({ png: true, rawTensor: false, candidateScores: false, pngUpscale: 1 });
    expect(r.request.clientId).toBe('anonymous');
    expect(r.request.verifiers).toEqual([{ name: 'supervised', weight: 1 }]);
  });

  it('fills zero-order and paths defaults', () => {
    expect(resolve(request({ zeroOrder: { n: 2, k: 3, acceptNonImproving: false } })).zeroOrder)
      .toEqual({ n: 2, k: 3, tau: 0.95, acceptNonImproving: false, maxRejections: 3 });
    expect(resolve(request({ paths: { n: 2, m: 2, backwardSteps: 0 } })).paths)
      .toEqual({ n: 2, m: 2, sigmaStart: 0.9, deltaForward: 0.05, deltaBackward: 0.1, backwardSteps: 0 });
  });

  it('final solver fills its gaps from the search solver', () => {
    const r = resolve(request({ random: { n: 1 }, searchSolver: { solver: Solver.SOLVER_EULER, steps: 5, guidanceScale: 2 }, finalSolver: { solver: 0, steps: 50 } }));
    expect(r.finalSolver).toEqual({ solver: Solver.SOLVER_EULER, steps: 50, guidanceScale: 2 });
  });

  it('without a condition, an empty verifier list (= the supervised verifier) is refused naming condition', () => {
    const e = refusal(request({ random: { n: 2 }, condition: undefined }));
    expect(e.field).toBe('condition');
    expect(e.message).toMatch(/^condition must set class_label: .*supervised verifier supervised/);
    expect(refusal(request({ random: { n: 2 }, condition: { unconditional: true } })).field).toBe('condition');
  });

  it('without a condition, verifiers that need none run unconditionally and report no label-needing evaluator', () => {
    const r = resolve(request({ random: { n: 2 }, condition: undefined, verifiers: [{ name: 'self-supervised', weight: 0 }] }));
    expect(r.condition).toEqual({ unconditional: true });
    expect(r.selection.map((v) => v.name)).toEqual(['self-supervised']);
    expect(r.xPredictionAt).toBe(0.4);
    expect(r.reported).toEqual([]);
  });

  it('steps 0 = the model default, and the filled request says which', () => {
    const r = resolve(request({ random: { n: 1 }, searchSolver: { solver: 0, steps: 0 } }));
    expect(r.request.searchSolver).toEqual({ solver: Solver.SOLVER_HEUN, steps: 10, guidanceScale: 1 });
    expect(r.request.finalSolver?.steps).toBe(10);
  });

  it('falls back to the first model when sit-fmnist is not served', () => {
    const catalog = { ...FAKE_CATALOG, models: FAKE_CATALOG.models.slice(1) };
    const r = resolveRequest(request({ random: { n: 1 }, condition: { classLabel: 1 } }), catalog, DEFAULT_LIMITS);
    expect(r.model.name).toBe('other-model');
    expect(r.selection[0].name).toBe('other-only');
  });

  it('held-out verifiers listed without select_with_held_out are reported, not selected', () => {
    const r = resolve(request({ random: { n: 2 }, verifiers: [{ name: 'supervised', weight: 0 }, { name: 'heldout', weight: 2 }] }));
    expect(r.selection).toEqual([{ name: 'supervised', weight: 1 }]);
    expect(r.reported).toEqual(['heldout']);
    const s = resolve(request({ random: { n: 2 }, selectWithHeldOut: true, verifiers: [{ name: 'supervised', weight: 0 }, { name: 'heldout', weight: 2 }] }));
    expect(s.selection).toEqual([{ name: 'supervised', weight: 1 }, { name: 'heldout', weight: 2 }]);
    expect(s.reported).toEqual([]);
  });

  it('builds a catalog from a Describe answer', () => {
    const c = catalogFromDescribe({
      models: [{ name: 'm', family: 'sit', sampleShape: ['1', '32', '32'], numClasses: 10, acceptsPrompt: false, defaultSolver: { solver: Solver.SOLVER_EULER, steps: 0 }, checkpoint: '', numParameters: '0', guidanceEmbedded: false }],
      verifiers: [{ name: 'v', description: '', needsClassLabel: true, needsPrompt: false, needsXPredictionAt: 0.4, heldOut: false, models: ['m'] }],
      device: 'cpu', computeDtype: 1, maxBatch: 64, maxRequestSamples: 512, memoryCapBytes: '0', memoryUsedBytes: '0', handleTtlSeconds: 60, versions: {}, maxMessageBytes: '0', queuedRows: '0',
    });
    expect(c.models[0].defaultSolver).toEqual({ solver: Solver.SOLVER_EULER, steps: 25, guidanceScale: 1 });
    expect(c.verifiers[0]).toEqual({ name: 'v', heldOut: false, needsClassLabel: true, needsPrompt: false, needsXPredictionAt: 0.4, models: ['m'] });
    expect(c.maxRequestSamples).toBe(512);
  });
});

describe('resolveRequest: every refusal names its field', () => {
  const cases: [string, Partial<SearchRequest>, string][] = [
    ['unknown model', { model: 'nope', random: { n: 1 } }, 'model'],
    ['no algorithm', {}, 'algorithm'],
    ['two algorithms', { random: { n: 1 }, zeroOrder: { n: 1, k: 1, acceptNonImproving: false } }, 'algorithm'],
    ['unknown verifier', { random: { n: 1 }, verifiers: [{ name: 'supervised', weight: 1 }, { name: 'nope', weight: 1 }] }, 'verifiers[1].name'],
    ['verifier of another model', { random: { n: 1 }, verifiers: [{ name: 'other-only', weight: 1 }] }, 'verifiers[0].name'],
    ['duplicate verifier', { random: { n: 1 }, verifiers: [{ name: 'supervised', weight: 1 }, { name: 'supervised', weight: 1 }] }, 'verifiers[1].name'],
    ['negative weight', { random: { n: 1 }, verifiers: [{ name: 'supervised', weight: -1 }] }, 'verifiers[0].weight'],
    ['only held-out verifiers', { random: { n: 1 }, verifiers: [{ name: 'heldout', weight: 1 }] }, 'verifiers'],
    ['class label too big', { random: { n: 1 }, condition: { classLabel: 10 } }, 'condition.class_label'],
    ['class label negative', { random: { n: 1 }, condition: { classLabel: -1 } }, 'condition.class_label'],
    ['label-needing verifier without a condition', { random: { n: 1 }, condition: undefined, verifiers: [{ name: 'supervised', weight: 1 }] }, 'condition.class_label'],
    ['prompt to a class model', { random: { n: 1 }, condition: { prompt: 'a cat' } }, 'condition.prompt'],
    ['random.n = 0', { random: { n: 0 } }, 'random.n'],
    ['zero_order.n = 0', { zeroOrder: { n: 0, k: 1, acceptNonImproving: false } }, 'zero_order.n'],
    ['zero_order.k = 0', { zeroOrder: { n: 1, k: 0, acceptNonImproving: false } }, 'zero_order.k'],
    ['tau = -1', { zeroOrder: { n: 1, k: 1, tau: -1, acceptNonImproving: false } }, 'zero_order.tau'],
    ['tau = 1 (every neighbour is the pivot)', { zeroOrder: { n: 3, k: 2, tau: 1, acceptNonImproving: false } }, 'zero_order.tau'],
    ['tau > 1', { zeroOrder: { n: 1, k: 1, tau: 1.01, acceptNonImproving: false } }, 'zero_order.tau'],
    ['tau NaN', { zeroOrder: { n: 1, k: 1, tau: NaN, acceptNonImproving: false } }, 'zero_order.tau'],
    ['paths.n = 0', { paths: { n: 0, m: 1, backwardSteps: 0 } }, 'paths.n'],
    ['paths.m = 0', { paths: { n: 1, m: 0, backwardSteps: 0 } }, 'paths.m'],
    ['sigma_start 0', { paths: { n: 1, m: 1, sigmaStart: 0, backwardSteps: 0 } }, 'paths.sigma_start'],
    ['sigma_start = 1', { paths: { n: 1, m: 1, sigmaStart: 1, backwardSteps: 0 } }, 'paths.sigma_start'],
    ['sigma_start = 1e-12 (no round)', { paths: { n: 1, m: 1, sigmaStart: 1e-12, backwardSteps: 0 } }, 'paths.sigma_start'],
    ['sigma_start = 1e-10 with tiny deltas', { paths: { n: 1, m: 1, sigmaStart: 1e-10, deltaForward: 1e-10, deltaBackward: 1e-9, backwardSteps: 0 } }, 'paths.sigma_start'],
    ['delta_forward = 1e-12 (noising would not go up)', { paths: { n: 1, m: 1, sigmaStart: 0.1, deltaForward: 1e-12, deltaBackward: 0.1, backwardSteps: 0 } }, 'paths.delta_forward'],
    ['delta_backward - delta_forward = 1e-12', { paths: { n: 1, m: 1, sigmaStart: 0.1, deltaForward: 0.05, deltaBackward: 0.05 + 1e-12, backwardSteps: 0 } }, 'paths.delta_backward'],
    ['sigma_start > 1', { paths: { n: 1, m: 1, sigmaStart: 1.2, backwardSteps: 0 } }, 'paths.sigma_start'],
    ['delta_forward 0', { paths: { n: 1, m: 1, deltaForward: 0, backwardSteps: 0 } }, 'paths.delta_forward'],
    ['delta_backward <= delta_forward', { paths: { n: 1, m: 1, deltaForward: 0.1, deltaBackward: 0.05, backwardSteps: 0 } }, 'paths.delta_backward'],
    ['sigma_start + delta_forward > 1', { paths: { n: 1, m: 1, sigmaStart: 0.98, backwardSteps: 0 } }, 'paths.delta_forward'],
    ['too many path rounds', { paths: { n: 1, m: 1, deltaForward: 0.05, deltaBackward: 0.0500001, backwardSteps: 0 } }, 'paths.delta_backward'],
    ['self-supervised with paths', { paths: { n: 1, m: 1, backwardSteps: 0 }, verifiers: [{ name: 'self-supervised', weight: 1 }] }, 'verifiers'],
    ['budget not a number', { random: { n: 1 }, budgetNfes: '12a' }, 'budget_nfes'],
    ['budget negative', { random: { n: 1 }, budgetNfes: '-5' }, 'budget_nfes'],
    ['budget over the limit', { random: { n: 1 }, budgetNfes: '10000001' }, 'budget_nfes'],
    ['seed not uint64', { random: { n: 1 }, seed: '18446744073709551616' }, 'seed'],
    ['seed not decimal', { random: { n: 1 }, seed: '0x10' }, 'seed'],
    ['steps over max', { random: { n: 1 }, searchSolver: { solver: Solver.SOLVER_HEUN, steps: 1001 } }, 'search_solver.steps'],
    ['final steps over max', { random: { n: 1 }, finalSolver: { solver: Solver.SOLVER_HEUN, steps: 5000 } }, 'final_solver.steps'],
    ['unknown solver', { random: { n: 1 }, searchSolver: { solver: Solver.UNRECOGNIZED, steps: 5 } }, 'search_solver.solver'],
    ['guidance NaN', { random: { n: 1 }, searchSolver: { solver: 0, steps: 0, guidanceScale: NaN } }, 'search_solver.guidance_scale'],
    ['guidance negative', { random: { n: 1 }, searchSolver: { solver: 0, steps: 0, guidanceScale: -1 } }, 'search_solver.guidance_scale'],
    ['guidance 1e308', { random: { n: 1 }, searchSolver: { solver: 0, steps: 0, guidanceScale: 1e308 } }, 'search_solver.guidance_scale'],
    ['guidance over 100', { random: { n: 1 }, finalSolver: { solver: 0, steps: 0, guidanceScale: 100.5 } }, 'final_solver.guidance_scale'],
    ['weight 1e308 (ZSCORE would overflow)', { random: { n: 1 }, ensemble: Ensemble.ENSEMBLE_ZSCORE_SUM, verifiers: [{ name: 'supervised', weight: 1e308 }] }, 'verifiers[0].weight'],
    ['weight NaN', { random: { n: 1 }, verifiers: [{ name: 'supervised', weight: NaN }] }, 'verifiers[0].weight'],
    ['client_id over 128 bytes', { random: { n: 1 }, clientId: 'c'.repeat(129) }, 'client_id'],
    ['client_id of 17 MiB', { random: { n: 1 }, clientId: 'c'.repeat(17 * 1024 * 1024) }, 'client_id'],
    ['client_id of 43 four-byte characters (172 bytes)', { random: { n: 1 }, clientId: '😀'.repeat(43) }, 'client_id'],
    ['model name of 200 kB', { random: { n: 1 }, model: 'm'.repeat(200_000) }, 'model'],
    ['verifier name of 50 MB', { random: { n: 1 }, verifiers: [{ name: 'v'.repeat(50_000_000), weight: 1 }] }, 'verifiers[0].name'],
    ['17 verifiers', { random: { n: 1 }, verifiers: Array.from({ length: 17 }, (_, i) => ({ name: `v${i}`, weight: 1 })) }, 'verifiers'],
    ['prompt over 4096 bytes', { random: { n: 1 }, condition: { prompt: 'p'.repeat(4097) } }, 'condition.prompt'],
    ['seed of 100 digits', { random: { n: 1 }, seed: '1'.repeat(100) }, 'seed'],
    ['budget of 100 digits', { random: { n: 1 }, budgetNfes: '1'.repeat(100) }, 'budget_nfes'],
    ['guidance infinite', { random: { n: 1 }, finalSolver: { solver: 0, steps: 0, guidanceScale: Infinity } }, 'final_solver.guidance_scale'],
    ['unknown ensemble', { random: { n: 1 }, ensemble: Ensemble.UNRECOGNIZED }, 'ensemble'],
    ['num_outputs over max', { random: { n: 100 }, numOutputs: 65 }, 'num_outputs'],
    ['paths with a different final solver', { paths: { n: 1, m: 1, backwardSteps: 0 }, finalSolver: { solver: 0, steps: 50 } }, 'final_solver'],
    ['backward steps over max', { paths: { n: 1, m: 1, backwardSteps: 1001 } }, 'paths.backward_steps'],
  ];

  it.each(cases)('%s', (_name, fields, field) => {
    const e = refusal(request(fields));
    expect(e).toBeInstanceOf(SearchError);
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.field).toBe(field);
    expect(e.message).toContain(field.replace(/\[\d+\]\.name$/, ''));
    expect(e.message.length).toBeLessThan(1100); // echoed values are cut
  });

  it('an unknown 200 kB model name is echoed cut short', () => {
    const catalog = FAKE_CATALOG;
    const e = (() => { try { resolveRequest(request({ random: { n: 1 }, model: 'm'.repeat(100) }), catalog, DEFAULT_LIMITS); } catch (x) { return x as SearchError; } throw new Error('no'); })();
    expect(e.message).toMatch(/^model \("m{64}…" \(100 characters\)\) is not served/);
  });

  it('delta_backward message names both fields and values', () => {
    expect(refusal(request({ paths: { n: 1, m: 1, deltaForward: 0.1, deltaBackward: 0.05, backwardSteps: 0 } })).message)
      .toBe('paths.delta_backward (0.05) must exceed paths.delta_forward (0.1)');
  });
});

describe('PROPERTY: every paths request that resolves completes', () => {
  // The real worker's preconditions (python-worker: engine/sampling), which the fake does not all check.
  class StrictWorker extends FakeWorker {
    async forwardNoise(inputs: TensorRef[], sigmaFrom: number, sigmaTo: number, seeds: string[]) {
      if (inputs.length === 0) throw new Error('forwardNoise: handles: at least one is required');
      if (!(sigmaTo > sigmaFrom && sigmaTo <= 1)) throw new Error(`forwardNoise: need sigma_to > sigma_from (${sigmaFrom} -> ${sigmaTo})`);
      return super.forwardNoise(inputs, sigmaFrom, sigmaTo, seeds);
    }
    async denoise(call: DenoiseCall) {
      if (call.inputs.length === 0) throw new Error('denoise: handles: at least one is required');
      if (!(call.sigmaFrom <= 1 && call.sigmaTo >= 0 && Number.isInteger(call.solver.steps) && call.solver.steps >= 1)) {
        throw new Error(`denoise: bad segment ${call.sigmaFrom} -> ${call.sigmaTo} in ${call.solver.steps} steps`);
      }
      return super.denoise(call);
    }
    async decode(samples: TensorRef[], upscale?: number) {
      if (samples.length === 0) throw new Error('decode: handles: at least one is required');
      return super.decode(samples, upscale);
    }
  }
  const level = fc.oneof(
    { arbitrary: fc.constantFrom(1e-12, 1e-9, 1e-7, 1e-6, 1.5e-6, 0.01, 0.05, 0.1, 0.3, 0.5, 0.9, 0.95, 1, 1 - 1e-12), weight: 3 },
    { arbitrary: fc.double({ min: 1e-13, max: 1.2, noNaN: true }), weight: 1 },
    { arbitrary: fc.double({ min: 1e-13, max: 1e-5, noNaN: true }), weight: 1 },
  );

  it('the resolved plan runs on a worker that checks what the real one checks', async () => {
    let resolved = 0;
    await fc.assert(
      fc.asyncProperty(level, level, fc.oneof(level, fc.constant(0)), fc.boolean(), fc.integer({ min: 0, max: 3 }), async (sigmaStart, deltaForward, gap, relative, backwardSteps) => {
        // delta_backward: mostly delta_forward plus a gap (the interesting edge), sometimes free.
        const deltaBackward = relative ? deltaForward + gap : gap;
        const req = request({
          paths: { n: 1, m: 1, sigmaStart, deltaForward, deltaBackward, backwardSteps },
          searchSolver: { solver: Solver.SOLVER_EULER, steps: 4, guidanceScale: 1 },
        });
        try {
          resolve(req);
        } catch (e) {
          expect(e).toBeInstanceOf(SearchError);
          expect((e as SearchError).field).toMatch(/^paths\./);
          return;
        }
        resolved++;
        const worker = new StrictWorker({ condition: req.condition });
        const result = await runSearch(worker, req, FAKE_CATALOG, DEFAULT_LIMITS, {}, new AbortController().signal);
        expect(result.outputs).toHaveLength(1);
        expect(result.accounting?.searchNfes).toBe(result.plan?.searchNfes);
      }),
      { numRuns: 500, seed: 12 },
    );
    expect(resolved).toBeGreaterThan(15);
  });

  it('regressions: the two probes that spent NFEs and then failed are refused up front', () => {
    expect(refusal(request({ paths: { n: 1, m: 1, sigmaStart: 1e-12, backwardSteps: 0 } })).field).toBe('paths.sigma_start');
    expect(refusal(request({ paths: { n: 1, m: 1, sigmaStart: 0.1, deltaForward: 1e-12, deltaBackward: 0.1, backwardSteps: 0 } })).field).toBe('paths.delta_forward');
  });
});

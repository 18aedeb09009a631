import { Ensemble, type SearchRequest } from '../gen/noisesearch/search/v1/search';
import { Solver } from '../gen/noisesearch/worker/v1/worker';
import { DEFAULT_LIMITS, catalogFromDescribe } from './catalog';
import { SearchError } from './errors';
import { resolveRequest } from './resolve';
import { FAKE_CATALOG } from './testing/fake-worker';
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

  it('without a class label, defaults to a verifier that needs none and reports no label-needing evaluator', () => {
    const r = resolve(request({ random: { n: 2 }, condition: undefined }));
    expect(r.condition).toEqual({ unconditional: true });
    expect(r.selection.map((v) => v.name)).toEqual(['self-supervised']);
    expect(r.xPredictionAt).toBe(0.4);
    expect(r.reported).toEqual([]);
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
    ['tau > 1', { zeroOrder: { n: 1, k: 1, tau: 1.01, acceptNonImproving: false } }, 'zero_order.tau'],
    ['tau NaN', { zeroOrder: { n: 1, k: 1, tau: NaN, acceptNonImproving: false } }, 'zero_order.tau'],
    ['paths.n = 0', { paths: { n: 0, m: 1, backwardSteps: 0 } }, 'paths.n'],
    ['paths.m = 0', { paths: { n: 1, m: 0, backwardSteps: 0 } }, 'paths.m'],
    ['sigma_start 0', { paths: { n: 1, m: 1, sigmaStart: 0, backwardSteps: 0 } }, 'paths.sigma_start'],
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
    ['guidance infinite', { random: { n: 1 }, finalSolver: { solver: 0, steps: 0, guidanceScale: Infinity } }, 'final_solver.guidance_scale'],
    ['unknown ensemble', { random: { n: 1 }, ensemble: Ensemble.UNRECOGNIZED }, 'ensemble'],
    ['num_outputs over max', { random: { n: 100 }, numOutputs: 65 }, 'num_outputs'],
    ['paths with a different final solver', { paths: { n: 1, m: 1, backwardSteps: 0 }, finalSolver: { solver: 0, steps: 50 } }, 'final_solver'],
    ['backward steps over max', { paths: { n: 1, m: 1, backwardSteps: 1001 } }, 'paths.backward_steps'],
  ];

  it.each(cases)('%s -> %s', (_name, fields, field) => {
    const e = refusal(request(fields));
    expect(e).toBeInstanceOf(SearchError);
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.field).toBe(field);
    expect(e.message).toContain(field.replace(/\[\d+\]\.name$/, ''));
  });

  it('delta_backward message names both fields and values', () => {
    expect(refusal(request({ paths: { n: 1, m: 1, deltaForward: 0.1, deltaBackward: 0.05, backwardSteps: 0 } })).message)
      .toBe('paths.delta_backward (0.05) must exceed paths.delta_forward (0.1)');
  });
});

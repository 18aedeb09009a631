// Text-to-image models (FLUX.1-dev): prompt conditions, prompt verifiers, and embedded guidance in the NFE accounting.
import { Ensemble, type SearchRequest } from '../gen/noisesearch/search/v1/search';
import { Solver, type DescribeResponse } from '../gen/noisesearch/worker/v1/worker';
import { NfeLedger } from './budget';
import { DEFAULT_LIMITS, catalogFromDescribe, type Catalog } from './catalog';
import { accountedDenoise } from './runner';
import { SearchError } from './errors';
import { accountedGuidance, accountedSolver } from './nfe';
import { planSearch } from './plan';
import { resolveRequest } from './resolve';
import type { WorkerPort } from './worker-port';

const euler = (steps: number, guidanceScale: number) => ({ solver: Solver.SOLVER_EULER, steps, guidanceScale });

function describeAnswer(guidanceEmbedded: boolean): DescribeResponse {
  const model = (name: string, acceptsPrompt: boolean, embedded: boolean) => ({
    name, family: acceptsPrompt ? 'flux' : 'sit', sampleShape: ['16', '2', '2'], numClasses: acceptsPrompt ? 0 : 10,
    acceptsPrompt, defaultSolver: euler(30, 3.5), checkpoint: '', numParameters: '0', guidanceEmbedded: embedded,
  });
  const verifier = (name: string, needsPrompt: boolean, models: string[], needsClassLabel = false) => ({
    name, description: '', needsClassLabel, needsPrompt, heldOut: false, models,
  });
  return {
    models: [model('flux-tiny', true, guidanceEmbedded), model('sit', false, false)],
    verifiers: [
      verifier('aesthetic', false, ['flux-tiny']), verifier('clip-score', true, ['flux-tiny']),
      verifier('image-reward', true, ['flux-tiny']), verifier('label', false, ['sit'], true),
    ],
    device: 'cpu', computeDtype: 1, maxBatch: 4, maxRequestSamples: 512, memoryCapBytes: '0', memoryUsedBytes: '0',
    handleTtlSeconds: 60, versions: {}, maxMessageBytes: '0',
  } as DescribeResponse;
}

const T2I = ['aesthetic', 'clip-score', 'image-reward'].map((name) => ({ name, weight: 1 }));

function request(fields: Partial<SearchRequest>): SearchRequest {
  return {
    model: 'flux-tiny', condition: { prompt: 'a red car' }, verifiers: T2I, ensemble: Ensemble.ENSEMBLE_RANK_AVERAGE,
    budgetNfes: '0', seed: '1', numOutputs: 1, clientId: '', selectWithHeldOut: false, shrinkToFit: false,
    ...fields,
  } as SearchRequest;
}

const resolve = (fields: Partial<SearchRequest>, catalog: Catalog = catalogFromDescribe(describeAnswer(true))) =>
  resolveRequest(request(fields), catalog, DEFAULT_LIMITS);

function refusal(fn: () => unknown): SearchError {
  try {
    fn();
  } catch (e) {
    return e as SearchError;
  }
  throw new Error('expected a refusal');
}

describe('prompt models', () => {
  it('the catalog carries accepts_prompt and guidance_embedded from Describe', () => {
    const c = catalogFromDescribe(describeAnswer(true));
    expect(c.models[0]).toMatchObject({ name: 'flux-tiny', acceptsPrompt: true, guidanceEmbedded: true });
    expect(c.models[1].guidanceEmbedded).toBeUndefined();
  });

  it('a prompt condition with the three text-to-image verifiers resolves, rank ensemble, model defaults', () => {
    const r = resolve({ random: { n: 4 } });
    expect(r.condition).toEqual({ prompt: 'a red car' });
    expect(r.selection.map((v) => v.name)).toEqual(['aesthetic', 'clip-score', 'image-reward']);
    expect(r.ensemble).toBe(Ensemble.ENSEMBLE_RANK_AVERAGE);
    expect(r.searchSolver).toEqual(euler(30, 3.5));
  });

  it('refuses what the model or a verifier cannot take, naming the field', () => {
    expect(refusal(() => resolve({ random: { n: 1 }, condition: { classLabel: 1 } })).field).toBe('condition.class_label');
    expect(refusal(() => resolve({ random: { n: 1 }, condition: { unconditional: true } })).field).toBe('condition.prompt');
    expect(refusal(() => resolve({ model: 'sit', random: { n: 1 }, verifiers: [], condition: { prompt: 'x' } })).field)
      .toBe('condition.prompt');
  });

  it('embedded guidance (3.5) costs one NFE per evaluation; classifier-free guidance would cost two', () => {
    const embedded = planSearch(resolve({ random: { n: 4 } }));
    expect(embedded).toMatchObject({ searchNfes: '120', nfesPerCandidate: '30', finalNfes: '0' });
    const zo = planSearch(resolve({ zeroOrder: { n: 2, k: 3, acceptNonImproving: false }, finalSolver: euler(10, 3.5) }));
    expect(zo).toMatchObject({ searchNfes: String(3 * 2 * 30), finalNfes: '10' });
    const cfg = planSearch(resolve({ random: { n: 4 } }, catalogFromDescribe(describeAnswer(false))));
    expect(cfg.searchNfes).toBe('240');
    expect(accountedGuidance(3.5, true)).toBe(1);
    expect(accountedGuidance(3.5, undefined)).toBe(3.5);
    expect(accountedSolver(euler(4, 3.5), true)).toEqual(euler(4, 1));
  });

  it('a denoise is reserved at one NFE per step and sent with the real guidance scale', async () => {
    const r = resolve({ random: { n: 2 } });
    const sent: unknown[] = [];
    const port = {
      denoise: async (req: { inputs: unknown[]; solver: unknown }) => {
        sent.push(req.solver);
        return { outputs: req.inputs, nfes: req.inputs.length * 30, captures: [] };
      },
    } as unknown as WorkerPort;
    const ledger = new NfeLedger(60, 0);
    const inputs = [{ handle: 'a', recipe: {} }, { handle: 'b', recipe: {} }];
    await accountedDenoise(port, ledger, 'search', r, inputs, r.searchSolver, 1, 0, 'solve');
    expect(ledger.searchNfes).toBe(60);
    expect(sent).toEqual([euler(30, 3.5)]);
  });
});

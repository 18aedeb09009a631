// Builds SearchRequests for tests: proto defaults plus the fields a test cares about.
import { Ensemble, type SearchRequest } from '../../gen/noisesearch/search/v1/search';

export function request(fields: Partial<SearchRequest> = {}): SearchRequest {
  return {
    model: '',
    condition: { classLabel: 3 },
    verifiers: [],
    ensemble: Ensemble.ENSEMBLE_UNSPECIFIED,
    selectWithHeldOut: false,
    budgetNfes: '0',
    shrinkToFit: false,
    seed: '42',
    numOutputs: 0,
    clientId: '',
    ...fields,
  };
}

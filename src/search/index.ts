// The search core's public surface, for the service layer.
export { runSearch, type SearchEvents } from './run-search';
export { resolveRequest, planSearch, type ResolvedRequest, type AlgorithmName } from './plan';
export { SearchError, type SearchErrorCode } from './errors';
export { catalogFromDescribe, DEFAULT_LIMITS, type Catalog, type Limits } from './catalog';
export { deriveSeed } from './seeds';
export { ALGORITHMS } from './registry';
export type { SearchAlgorithm, SearchContext, AlgorithmOutcome } from './algorithm';
export type { WorkerPort, TensorRef } from './worker-port';

// What the job registry needs of "a search": plan it (validating the request) and run it.
// The real implementation (core-search-runner.ts) runs the framework-free core in src/search/
// on a leased worker; unit tests use fakes.
import type { Plan, Result, Round, SearchRequest } from '../gen/noisesearch/search/v1/search';

export interface SearchRunEvents {
  onPlan?(plan: Plan): void;
  onRound(round: Round): void;
}

export interface SearchRunContext {
  jobId: string;
  signal: AbortSignal;
  events: SearchRunEvents;
}

export interface SearchRunner {
  /** Validates the request and returns its plan; throws SearchError (INVALID_ARGUMENT, RESOURCE_EXHAUSTED, ...). */
  plan(request: SearchRequest): Plan;
  /** Runs the search to its result; rejects on failure or when `signal` fires. */
  run(request: SearchRequest, ctx: SearchRunContext): Promise<Result>;
}

// What the job registry needs of "a search": plan it (validating the request) and run it.
// The real implementation (core-search-runner.ts) runs the framework-free core in src/search/
// on a leased worker; unit tests use fakes.
import type { Plan, Result, Round, SearchRequest } from '../gen/noisesearch/search/v1/search';
import type { ResumePoint, SearchCheckpoint } from '../search/checkpoint';

export interface SearchRunEvents {
  onPlan?(plan: Plan): void;
  /** A round and the checkpoint to continue from after it; may throw to stop the run (drain); may be async (awaited). */
  onRound(round: Round, checkpoint?: SearchCheckpoint): void | Promise<void>;
}

export interface SearchRunContext {
  jobId: string;
  signal: AbortSignal;
  events: SearchRunEvents;
  /** Continue from the job's last committed round. */
  resume?: ResumePoint;
}

export interface SearchRunner {
  /** Validates the request and returns its plan; throws SearchError (INVALID_ARGUMENT, RESOURCE_EXHAUSTED, ...). */
  plan(request: SearchRequest): Plan;
  /** Runs the search to its result; rejects on failure or when `signal` fires. */
  run(request: SearchRequest, ctx: SearchRunContext): Promise<Result>;
}

// Any error as the one error vocabulary (SearchError, src/search/errors.ts) with a PUBLIC message:
// worker faults keep their status class but never the worker's address or internal details (those go
// to the log). Framework-free: the job registry and the gRPC filter (grpc-errors.ts) both use it.
import * as grpc from '@grpc/grpc-js';
import { SearchError, bounded, type SearchErrorCode } from '../search/errors';
import { WorkerCallAbortedError, WorkerCallError } from '../worker/worker-rpc';
import { WorkerProtocolError } from '../worker/grpc-worker-port';

/** Worker statuses a client may see as such (the worker was busy, gone or slow); any other worker fault is ours. */
const WORKER_PASSTHROUGH: Partial<Record<grpc.status, SearchErrorCode>> = {
  [grpc.status.RESOURCE_EXHAUSTED]: 'RESOURCE_EXHAUSTED',
  [grpc.status.UNAVAILABLE]: 'UNAVAILABLE',
  [grpc.status.DEADLINE_EXCEEDED]: 'DEADLINE_EXCEEDED',
};

/**
 * Any error as a SearchError with a message fit for the client. `log` receives the internal detail
 * (worker address, the worker's own message) of errors whose public message hides it.
 */
export function asSearchError(e: unknown, signal?: AbortSignal, log: (m: string) => void = (m) => console.warn(m)): SearchError {
  if (e instanceof SearchError) return e.message.length > 1024 ? new SearchError(e.code, bounded(e.message), e.field) : e;
  if (e instanceof WorkerCallAbortedError || (signal?.aborted && (e as Error)?.name === 'AbortError')) {
    return new SearchError('CANCELLED', 'search cancelled');
  }
  if (e instanceof WorkerCallError) {
    log(e.message);
    const code = WORKER_PASSTHROUGH[e.code] ?? 'INTERNAL';
    const status = grpc.status[e.code] ?? String(e.code);
    // A worker's memory cap is the caller's to know about (a smaller request fits); the rest is not.
    const why = e.code === grpc.status.RESOURCE_EXHAUSTED ? `: ${bounded(e.details, 200)}` : '';
    return new SearchError(code, `the worker failed during ${e.method} (${status})${why}`);
  }
  if (signal?.aborted) return new SearchError('CANCELLED', 'search cancelled');
  if (e instanceof WorkerProtocolError) return new SearchError('INTERNAL', bounded(e.message));
  log(e instanceof Error ? (e.stack ?? e.message) : String(e));
  return new SearchError('INTERNAL', 'internal error (details are in the orchestrator log)');
}


// The one mapping of errors onto gRPC statuses. `asSearchError` turns anything a search or a job can
// throw into the one error vocabulary (SearchError, src/search/errors.ts) with a PUBLIC message:
// worker faults keep their status class but never the worker's address or internal details (those
// go to the orchestrator's log); `toGrpcStatus` maps a SearchError's code 1:1 onto a gRPC status.
import { ArgumentsHost, Catch, Logger, RpcExceptionFilter } from '@nestjs/common';
import { RpcException } from '@nestjs/microservices';
import * as grpc from '@grpc/grpc-js';
import { Observable, throwError } from 'rxjs';
import { SearchError, bounded, type SearchErrorCode } from '../search/errors';
import { WorkerCallAbortedError, WorkerCallError } from '../worker/worker-rpc';
import { WorkerProtocolError } from '../worker/grpc-worker-port';

export interface GrpcStatusError {
  code: grpc.status;
  message: string;
  details: string;
}

export const GRPC_STATUS: Record<SearchErrorCode, grpc.status> = {
  INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  RESOURCE_EXHAUSTED: grpc.status.RESOURCE_EXHAUSTED,
  NOT_FOUND: grpc.status.NOT_FOUND,
  CANCELLED: grpc.status.CANCELLED,
  FAILED_PRECONDITION: grpc.status.FAILED_PRECONDITION,
  UNAVAILABLE: grpc.status.UNAVAILABLE,
  DEADLINE_EXCEEDED: grpc.status.DEADLINE_EXCEEDED,
  INTERNAL: grpc.status.INTERNAL,
};

const logger = new Logger('Errors');

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
export function asSearchError(e: unknown, signal?: AbortSignal, log: (m: string) => void = (m) => logger.warn(m)): SearchError {
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

export function toGrpcStatus(e: unknown): GrpcStatusError {
  const make = (code: grpc.status, message: string): GrpcStatusError => ({ code, message, details: message });
  if (e instanceof RpcException) {
    const inner = e.getError();
    if (typeof inner === 'object' && inner && typeof (inner as GrpcStatusError).code === 'number') {
      const m = (inner as GrpcStatusError).message ?? e.message;
      return make((inner as GrpcStatusError).code, bounded(m));
    }
    return make(grpc.status.UNKNOWN, bounded(e.message));
  }
  const s = asSearchError(e);
  return make(GRPC_STATUS[s.code] ?? grpc.status.INTERNAL, s.message);
}

/** Every error leaving the Search controller, unary or streamed, as a gRPC status. */
@Catch()
export class GrpcErrorFilter implements RpcExceptionFilter<unknown> {
  catch(exception: unknown, _host: ArgumentsHost): Observable<never> {
    return throwError(() => toGrpcStatus(exception));
  }
}

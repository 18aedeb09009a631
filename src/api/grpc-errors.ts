// The one mapping of errors onto gRPC statuses. `asSearchError` turns anything a search or a job can
// throw into the one error vocabulary (SearchError, src/search/errors.ts) with a PUBLIC message:
// worker faults keep their status class but never the worker's address or internal details (those
// go to the orchestrator's log); `toGrpcStatus` maps a SearchError's code 1:1 onto a gRPC status.
import { ArgumentsHost, Catch, Logger, RpcExceptionFilter } from '@nestjs/common';
import { RpcException } from '@nestjs/microservices';
import * as grpc from '@grpc/grpc-js';
import { Observable, throwError } from 'rxjs';
import { bounded, type SearchErrorCode } from '../search/errors';
import { asSearchError } from './public-errors';

export { asSearchError } from './public-errors';

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
  const s = asSearchError(e, undefined, (m) => logger.warn(m));
  return make(GRPC_STATUS[s.code] ?? grpc.status.INTERNAL, s.message);
}

/** Every error leaving the Search controller, unary or streamed, as a gRPC status. */
@Catch()
export class GrpcErrorFilter implements RpcExceptionFilter<unknown> {
  catch(exception: unknown, _host: ArgumentsHost): Observable<never> {
    return throwError(() => toGrpcStatus(exception));
  }
}

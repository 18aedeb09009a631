// Errors -> gRPC status: SearchError codes map 1:1 onto gRPC codes; the message names the field.
import { ArgumentsHost, Catch, RpcExceptionFilter } from '@nestjs/common';
import { RpcException } from '@nestjs/microservices';
import * as grpc from '@grpc/grpc-js';
import { Observable, throwError } from 'rxjs';
import { SearchError } from '../search/errors';
import { WorkerCallAbortedError, WorkerCallError } from '../worker/worker-rpc';

export interface GrpcStatusError {
  code: grpc.status;
  message: string;
  details: string;
}

const BY_NAME: Record<string, grpc.status> = {
  INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  RESOURCE_EXHAUSTED: grpc.status.RESOURCE_EXHAUSTED,
  NOT_FOUND: grpc.status.NOT_FOUND,
  CANCELLED: grpc.status.CANCELLED,
  FAILED_PRECONDITION: grpc.status.FAILED_PRECONDITION,
  INTERNAL: grpc.status.INTERNAL,
  UNAVAILABLE: grpc.status.UNAVAILABLE,
  DEADLINE_EXCEEDED: grpc.status.DEADLINE_EXCEEDED,
};

export function toGrpcStatus(e: unknown): GrpcStatusError {
  const make = (code: grpc.status, message: string): GrpcStatusError => ({ code, message, details: message });
  if (e instanceof RpcException) {
    const inner = e.getError();
    if (typeof inner === 'object' && inner && typeof (inner as GrpcStatusError).code === 'number') {
      const m = (inner as GrpcStatusError).message ?? e.message;
      return make((inner as GrpcStatusError).code, m);
    }
    return make(grpc.status.UNKNOWN, e.message);
  }
  if (e instanceof SearchError) {
    const name = (e as SearchError & { grpcCode?: string }).grpcCode ?? e.code;
    return make(BY_NAME[name] ?? grpc.status.INTERNAL, e.message);
  }
  if (e instanceof WorkerCallAbortedError) return make(grpc.status.CANCELLED, e.message);
  if (e instanceof WorkerCallError) {
    const code = e.code === grpc.status.RESOURCE_EXHAUSTED || e.code === grpc.status.UNAVAILABLE
      || e.code === grpc.status.DEADLINE_EXCEEDED ? e.code : grpc.status.INTERNAL;
    return make(code, e.message);
  }
  return make(grpc.status.INTERNAL, e instanceof Error ? e.message : String(e));
}

export function toRpcException(e: unknown): RpcException {
  return new RpcException(toGrpcStatus(e));
}

/** Every error leaving the Search controller, unary or streamed, as a gRPC status. */
@Catch()
export class GrpcErrorFilter implements RpcExceptionFilter<unknown> {
  catch(exception: unknown, _host: ArgumentsHost): Observable<never> {
    return throwError(() => toGrpcStatus(exception));
  }
}

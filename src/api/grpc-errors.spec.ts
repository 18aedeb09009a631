import * as grpc from '@grpc/grpc-js';
import { RpcException } from '@nestjs/microservices';
import { lastValueFrom } from 'rxjs';
import { SearchError } from '../search/errors';
import { WorkerCallAbortedError, WorkerCallError } from '../worker/worker-rpc';
import { GrpcErrorFilter, toGrpcStatus } from './grpc-errors';
import { normalizeRequest } from './search.controller';

describe('toGrpcStatus', () => {
  it.each([
    ['INVALID_ARGUMENT', grpc.status.INVALID_ARGUMENT],
    ['RESOURCE_EXHAUSTED', grpc.status.RESOURCE_EXHAUSTED],
    ['NOT_FOUND', grpc.status.NOT_FOUND],
    ['CANCELLED', grpc.status.CANCELLED],
    ['FAILED_PRECONDITION', grpc.status.FAILED_PRECONDITION],
    ['INTERNAL', grpc.status.INTERNAL],
  ] as const)('maps SearchError %s', (code, status) => {
    const s = toGrpcStatus(new SearchError(code, `paths.delta_backward must exceed delta_forward`, 'paths.delta_backward'));
    expect(s.code).toBe(status);
    expect(s.message).toContain('paths.delta_backward');
    expect(s.details).toBe(s.message);
  });

  it('maps worker errors, aborts, RpcExceptions and the rest', () => {
    expect(toGrpcStatus(new WorkerCallError('score', grpc.status.RESOURCE_EXHAUSTED, 'cap', 'w')).code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(toGrpcStatus(new WorkerCallError('score', grpc.status.INVALID_ARGUMENT, 'x', 'w')).code).toBe(grpc.status.INTERNAL);
    expect(toGrpcStatus(new WorkerCallAbortedError('denoise')).code).toBe(grpc.status.CANCELLED);
    expect(toGrpcStatus(new RpcException({ code: grpc.status.NOT_FOUND, message: 'm' }))).toMatchObject({ code: grpc.status.NOT_FOUND, message: 'm' });
    expect(toGrpcStatus(new Error('boom'))).toMatchObject({ code: grpc.status.INTERNAL, message: 'boom' });
    const withGrpcCode = Object.assign(new SearchError('INTERNAL', 'down'), { grpcCode: 'UNAVAILABLE' });
    expect(toGrpcStatus(withGrpcCode).code).toBe(grpc.status.UNAVAILABLE);
  });

  it('the filter rethrows a gRPC status object', async () => {
    const out = new GrpcErrorFilter().catch(new SearchError('INVALID_ARGUMENT', 'n must be >= 1', 'random.n'), {} as never);
    await expect(lastValueFrom(out)).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT, message: 'n must be >= 1' });
  });
});

describe('normalizeRequest', () => {
  it('turns proto-loader nulls into ts-proto undefineds and keeps oneof members', () => {
    const r = normalizeRequest({ model: '', condition: null, zeroOrder: { n: 2, k: 3, acceptNonImproving: false }, searchSolver: null, verifiers: [], budgetNfes: '100', seed: '0' });
    expect(r.condition).toBeUndefined();
    expect(r.searchSolver).toBeUndefined();
    expect(r.zeroOrder).toEqual({ n: 2, k: 3, acceptNonImproving: false, tau: undefined, maxRejections: undefined });
    expect(r.random).toBeUndefined();
    expect(r.budgetNfes).toBe('100');
  });
});

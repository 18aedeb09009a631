import * as grpc from '@grpc/grpc-js';
import { RpcException } from '@nestjs/microservices';
import { lastValueFrom } from 'rxjs';
import { SearchError, echo, invalid } from '../search/errors';
import { WorkerCallAbortedError, WorkerCallError } from '../worker/worker-rpc';
import { GrpcErrorFilter, asSearchError, toGrpcStatus } from './grpc-errors';
import { normalizeRequest } from './search.controller';

describe('toGrpcStatus', () => {
  it.each([
    ['INVALID_ARGUMENT', grpc.status.INVALID_ARGUMENT],
    ['RESOURCE_EXHAUSTED', grpc.status.RESOURCE_EXHAUSTED],
    ['NOT_FOUND', grpc.status.NOT_FOUND],
    ['CANCELLED', grpc.status.CANCELLED],
    ['FAILED_PRECONDITION', grpc.status.FAILED_PRECONDITION],
    ['UNAVAILABLE', grpc.status.UNAVAILABLE],
    ['DEADLINE_EXCEEDED', grpc.status.DEADLINE_EXCEEDED],
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
    expect(toGrpcStatus(new Error('boom'))).toMatchObject({ code: grpc.status.INTERNAL });
  });

  it('never shows a worker address or internal detail; logs it instead', () => {
    const logged: string[] = [];
    const e = new WorkerCallError('decode', grpc.status.INVALID_ARGUMENT, 'handles: at least one is required', '10.1.2.3:50151');
    const s = asSearchError(e, undefined, (m) => logged.push(m));
    expect(s.code).toBe('INTERNAL');
    expect(s.message).toBe('the worker failed during decode (INVALID_ARGUMENT)');
    expect(logged.join('\n')).toContain('10.1.2.3:50151');
    const plain = asSearchError(new Error('worker 10.1.2.3:50151 not serving after 100 ms'), undefined, (m) => logged.push(m));
    expect(plain.message).not.toContain('10.1.2.3');
    expect(toGrpcStatus(new WorkerCallError('score', grpc.status.UNAVAILABLE, 'down', '10.1.2.3:1')).message).not.toContain('10.1.2.3');
  });

  it('bounds every message (echoed values are cut)', () => {
    const huge = 'm'.repeat(200_000);
    expect(toGrpcStatus(invalid('model', `(${huge}) is not served`)).message.length).toBeLessThan(1100);
    expect(toGrpcStatus(new SearchError('NOT_FOUND', huge)).message.length).toBeLessThan(1100);
    expect(echo(huge)).toMatch(/^"m{64}…" \(200000 characters\)$/);
    expect(echo('short')).toBe('"short"');
    expect(echo(1.5)).toBe('1.5');
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

// The real SearchRunner: the framework-free core (src/search/) on a worker leased from the pool,
// through a GrpcWorkerPort bound to the job's model, condition, namespace and AbortSignal; resumed
// from a checkpoint when the job has one, and moved to a recovered worker after a worker fault.
import type { Plan, Result, SearchRequest } from '../gen/noisesearch/search/v1/search';
import { catalogFromDescribe, type Catalog, type Limits } from '../search/catalog';
import { prepareSearch } from '../search/plan';
import { runSearch } from '../search/run-search';
import { SearchError } from '../search/errors';
import type { TensorRef } from '../search/worker-port';
import { GrpcWorkerPort } from '../worker/grpc-worker-port';
import type { WorkerPool } from '../worker/worker-pool';
import type { WorkerRpc } from '../worker/worker-rpc';
import type { SearchRunContext, SearchRunner } from './search-runner';

/** Worker namespace of one job: the client's id plus the job id (so a job's handles can be freed at once). */
export function namespaceOf(request: SearchRequest, jobId: string): string {
  const client = (request.clientId || 'anonymous').replace(/[^A-Za-z0-9_.-]/g, '_');
  return `${client}.${jobId}`;
}

export class CoreSearchRunner implements SearchRunner {
  private catalogCache?: Catalog;

  constructor(private readonly pool: WorkerPool, private readonly limits: Limits, private readonly log?: (message: string) => void) {}

  get catalog(): Catalog {
    if (!this.catalogCache) {
      if (!this.pool.describe) throw new SearchError('FAILED_PRECONDITION', 'no worker is ready');
      this.catalogCache = catalogFromDescribe(this.pool.describe);
    }
    return this.catalogCache;
  }

  plan(request: SearchRequest): Plan {
    return prepareSearch(request, this.catalog, this.limits).plan;
  }

  async run(request: SearchRequest, ctx: SearchRunContext): Promise<Result> {
    // Resolved once for the run: the same object plans, runs and packages the search.
    const prepared = prepareSearch(request, this.catalog, this.limits);
    const resolved = prepared.spec;
    const lease = this.pool.lease();
    const bind = (rpc: WorkerRpc) => new GrpcWorkerPort(rpc, {
      model: resolved.model.name,
      condition: resolved.condition,
      namespace: namespaceOf(request, ctx.jobId),
      signal: ctx.signal,
    });
    let port = bind(lease.rpc);
    try {
      const events = { ...ctx.events, fetchTensors: (samples: TensorRef[]) => port.fetch(samples) };
      return await runSearch(port, request, this.catalog, this.limits, events, ctx.signal, {
        resume: ctx.resume,
        prepared,
        // A worker fault: continue on the respawned (or another) worker; the core rebuilds the tensors.
        recover: async (error, fault) => {
          if (ctx.signal.aborted) return undefined;
          const rpc = await this.pool.recover(lease, error);
          if (!rpc || ctx.signal.aborted) return undefined;
          this.log?.(`job ${ctx.jobId}: worker fault ${fault} (${error instanceof Error ? error.message : String(error)}); continuing on ${rpc.address}`);
          port = bind(rpc);
          return port;
        },
      });
    } finally {
      // Free whatever the search left on the worker, even after a cancel (best effort).
      await port.releaseAll().catch(() => undefined);
      lease.release();
    }
  }
}

// Candidate thumbnails for the dashboard: a candidate's recipe (from the job's round events) rebuilt on a
// worker (Worker.Materialize), decoded to PNG and released. Each costs about one candidate's solve on
// the worker, so the dashboard asks only for the kept candidates; one preview runs at a time and the
// last 512 are cached. Candidates are named by job id and candidate id only (no path reaches a file).
import { Injectable } from '@nestjs/common';
import type { Candidate, SearchEvent } from '../gen/noisesearch/search/v1/search';
import { JobsService } from '../jobs/jobs.service';
import { WorkerService } from '../worker/worker.service';

const CACHE = 512;

@Injectable()
export class PreviewsService {
  private readonly cache = new Map<string, Buffer>();
  private chain: Promise<unknown> = Promise.resolve();
  /** Previews rebuilt on a worker since start (a metric). */
  built = 0;

  constructor(private readonly jobs: JobsService, private readonly workers: WorkerService) {}

  /** The job's events so far (Watch replays them synchronously on subscribe). */
  private events(jobId: string): SearchEvent[] {
    const out: SearchEvent[] = [];
    const sub = this.jobs.watch(jobId).subscribe({ next: (e) => out.push(e), error: () => undefined });
    sub.unsubscribe();
    return out;
  }

  candidate(jobId: string, candidateId: string): { candidate?: Candidate; model: string } {
    const job = this.jobs.get(jobId);
    const model = job.plan?.request?.model || job.request?.model || '';
    for (const e of this.events(jobId)) {
      const c = e.round?.candidates.find((x) => x.id === candidateId) ?? e.result?.candidates.find((x) => x.id === candidateId);
      if (c) return { candidate: c, model };
    }
    return { model };
  }

  /** PNG of a candidate, or undefined when the job has no such candidate (or it has no recipe). */
  async png(jobId: string, candidateId: string): Promise<Buffer | undefined> {
    const key = `${jobId}/${candidateId}`;
    const hit = this.cache.get(key);
    if (hit) return hit;
    const { candidate, model } = this.candidate(jobId, candidateId);
    if (!candidate?.recipe) return undefined;
    const run = this.chain.then(async () => {
      const lease = this.workers.lease();
      const namespace = 'admin-preview';
      try {
        const made = await lease.rpc.call('materialize', { namespace, recipes: [candidate.recipe!] });
        const decoded = await lease.rpc.call('decode', { namespace, model, handles: [made.tensors[0].handle], upscale: 1 });
        this.built++;
        return Buffer.from(decoded.png[0]);
      } finally {
        await lease.rpc.call('release', { namespace, handles: [], all: true }).catch(() => undefined);
        lease.release();
      }
    });
    this.chain = run.catch(() => undefined);
    const png = await run;
    this.cache.set(key, png);
    if (this.cache.size > CACHE) this.cache.delete(this.cache.keys().next().value as string);
    return png;
  }
}

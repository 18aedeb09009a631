import { Job, JobState, SearchRequest } from '../gen/noisesearch/search/v1/search';
import type { JobsService } from '../jobs/jobs.service';
import type { WorkerService } from '../worker/worker.service';
import { AdminService, parseLimit } from './admin.service';

const jobs = (n: number): Job[] => Array.from({ length: n }, (_, i) => Job.fromPartial({
  id: `job-${i}`, state: JobState.JOB_STATE_SUCCEEDED, request: SearchRequest.fromPartial({ random: { n: 2 } }),
}));

function admin(kept: Job[]): AdminService {
  const stub = { list: () => kept, counts: () => ({ running: 0, queued: 0 }) };
  return new AdminService(stub as unknown as JobsService, {} as WorkerService);
}

describe('GET /admin/jobs?limit=', () => {
  it('is refused out of [1, 1000], naming limit and the range, not clamped', () => {
    for (const bad of [0, 1001, 999_999, 2.5, -1]) {
      expect(() => parseLimit(bad)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', field: 'limit' }));
      expect(() => parseLimit(bad)).toThrow(/^limit \(.+\) must be in \[1, 1000\] \(omit it for 50\)$/);
    }
    expect(() => admin(jobs(3)).listJobs({ limit: 0 })).toThrow(/^limit \(0\) must be in \[1, 1000\]/);
    expect(() => admin(jobs(3)).listJobs({ limit: 1001 })).toThrow(/^limit \(1001\) must be in \[1, 1000\]/);
  });

  it('returns at most `limit` jobs; 50 when it is absent', () => {
    expect(parseLimit(undefined)).toBe(50);
    expect(parseLimit(1)).toBe(1);
    expect(parseLimit(1000)).toBe(1000);
    const a = admin(jobs(60));
    expect(a.listJobs({ limit: 1 }).jobs.map((j) => j.id)).toEqual(['job-0']);
    expect(a.listJobs({}).jobs).toHaveLength(50);
    expect(a.listJobs({ limit: 1000 })).toMatchObject({ total: 60 });
    expect(a.listJobs({ limit: 1000 }).jobs).toHaveLength(60);
  });
});

import { Job, JobState, SearchRequest } from '../gen/noisesearch/search/v1/search';
import { SearchError } from '../search/errors';
import { LIST_JOB_MAX_BYTES, checkJobId, checkList, fitListAnswer } from './job-requests';

const MiB = 1024 * 1024;
const fieldOf = (f: () => unknown) => {
  try { f(); } catch (e) { return (e as SearchError).field; }
  return undefined;
};

function job(i: number, clientId = 'c'): Job {
  return Job.fromPartial({
    id: `job-${i}`, state: JobState.JOB_STATE_SUCCEEDED, request: SearchRequest.fromPartial({ clientId, random: { n: 1 } }),
    plan: { algorithm: 'random', request: SearchRequest.fromPartial({ clientId }) }, createdAt: '2026-01-01T00:00:00Z',
  });
}

describe('List / Get / Watch / Cancel bounds', () => {
  it('List: an unknown state names state; a limit over the cap names limit (not silently capped)', () => {
    expect(fieldOf(() => checkList(99, 5))).toBe('state');
    expect(fieldOf(() => checkList(-1, 5))).toBe('state');
    expect(fieldOf(() => checkList(0, 4294967295))).toBe('limit');
    expect(fieldOf(() => checkList(0, 1001))).toBe('limit');
    expect(checkList(JobState.JOB_STATE_RUNNING, 0)).toEqual({ state: JobState.JOB_STATE_RUNNING, limit: 50 });
    expect(checkList(undefined, 1000)).toEqual({ state: JobState.JOB_STATE_UNSPECIFIED, limit: 1000 });
  });

  it('job ids over 128 bytes name id', () => {
    expect(fieldOf(() => checkJobId('j'.repeat(129)))).toBe('id');
    expect(checkJobId('job-1')).toBe('job-1');
    expect(checkJobId(undefined)).toBe('');
  });

  it('two stored jobs with a 17 MiB client_id cannot make List fail: they are cut, the rest pass as they are', () => {
    const jobs = [job(1, 'x'.repeat(17 * MiB)), job(2), job(3, 'y'.repeat(17 * MiB)), job(4)];
    const out = fitListAnswer(jobs, 64 * MiB);
    expect(out.map((j) => j.id)).toEqual(['job-1', 'job-2', 'job-3', 'job-4']);
    for (const j of out) expect(Job.encode(j).finish().length).toBeLessThanOrEqual(LIST_JOB_MAX_BYTES);
    expect(out[1]).toEqual(jobs[1]);
    expect(out[0].request).toBeUndefined();
    expect(out[0].error).toMatch(/Get it for the whole/);
  });

  it('the whole answer stays under the message limit (the newest that fit)', () => {
    const jobs = Array.from({ length: 1000 }, (_, i) => job(i, 'z'.repeat(30_000)));
    const out = fitListAnswer(jobs, 4 * MiB);
    const total = out.reduce((n, j) => n + Job.encode(j).finish().length, 0);
    expect(total).toBeLessThan(4 * MiB);
    expect(out.length).toBeGreaterThan(10);
    expect(out[0].id).toBe('job-0');
  });
});

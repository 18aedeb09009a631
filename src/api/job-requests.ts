// Bounds of the job calls (Get, Watch, Cancel, List), checked before the store is asked anything,
// and the List answer kept within the message limit whatever the store holds.
import { Job, JobState } from '../gen/noisesearch/search/v1/search';
import { echo, invalid } from '../search/errors';
import { BOUNDS, checkBytes } from '../search/resolve';

export const LIST_DEFAULT_LIMIT = 50;

/** Get / Watch / Cancel: a job id of at most BOUNDS.jobIdBytes bytes. */
export function checkJobId(id: string | undefined | null): string {
  const s = id ?? '';
  checkBytes('id', s, BOUNDS.jobIdBytes);
  return s;
}

const KNOWN_STATES = new Set<number>(Object.values(JobState).filter((v): v is number => typeof v === 'number' && v >= 0));

/** List: a known state (UNSPECIFIED = all) and a limit in [0, BOUNDS.listLimit] (0 = 50). */
export function checkList(state: number | undefined | null, limit: number | undefined | null): { state: JobState; limit: number } {
  const st = state ?? 0;
  if (!KNOWN_STATES.has(st)) throw invalid('state', `(${echo(st)}) is not a known job state`);
  const lim = limit ?? 0;
  if (!Number.isInteger(lim) || lim < 0 || lim > BOUNDS.listLimit) {
    throw invalid('limit', `(${echo(lim)}) must be in [0, ${BOUNDS.listLimit}] (0 = ${LIST_DEFAULT_LIMIT})`);
  }
  return { state: st as JobState, limit: lim === 0 ? LIST_DEFAULT_LIMIT : lim };
}

/** Largest encoded Job a List answer carries as it is; a bigger one (stored before bounds existed) is cut. */
export const LIST_JOB_MAX_BYTES = 64 * 1024;

/**
 * The jobs of a List answer, each within LIST_JOB_MAX_BYTES (an oversized one keeps its id, state,
 * progress and times, and says to Get it) and all together within `maxBytes`: the newest that fit.
 */
export function fitListAnswer(jobs: Job[], maxBytes: number): Job[] {
  const out: Job[] = [];
  let total = 0;
  const budget = Math.max(0, maxBytes - 16 * 1024);
  for (const job of jobs) {
    let j = job;
    let size = Job.encode(j).finish().length;
    if (size > LIST_JOB_MAX_BYTES) {
      j = {
        ...job, request: undefined, plan: undefined, result: undefined,
        error: `${echo(job.error, 200)} (this job's record is ${size} bytes: Get it for the whole)`,
      };
      size = Job.encode(j).finish().length;
    }
    if (total + size + 8 > budget) break;
    total += size + 8;
    out.push(j);
  }
  return out;
}

// What the admin endpoint shows, as plain JSON: jobs (filtered lists, details without image bytes),
// workers (health + Describe: models, load, memory), usage (NFEs per job, per client, in total).
// Reads only the public classes of the jobs and worker modules.
import { Injectable } from '@nestjs/common';
import {
  Job, JobState, Plan, Result, Round, SearchEvent, jobStateToJSON,
} from '../gen/noisesearch/search/v1/search';
import { LIST_DEFAULT_LIMIT } from '../api/job-requests';
import { JobsService } from '../jobs/jobs.service';
import { echo, invalid } from '../search/errors';
import { BOUNDS } from '../search/resolve';
import { WorkerService } from '../worker/worker.service';

export const STATE_NAMES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;
export type StateName = (typeof STATE_NAMES)[number];

export function stateName(s: JobState): string {
  return jobStateToJSON(s).replace(/^JOB_STATE_/, '').toLowerCase();
}

export function parseState(name: string | undefined): JobState {
  if (!name) return JobState.JOB_STATE_UNSPECIFIED;
  const i = STATE_NAMES.indexOf(name.toLowerCase() as StateName);
  if (i < 0) throw new RangeError(`state must be one of ${STATE_NAMES.join(', ')}, got ${JSON.stringify(name)}`);
  return (i + 1) as JobState;
}

/**
 * GET /admin/jobs?limit=: in [1, BOUNDS.listLimit], LIST_DEFAULT_LIMIT when absent. Out of range is
 * refused, not clamped, as List refuses it (src/api/job-requests.ts; there 0 means the default).
 */
export function parseLimit(limit: number | undefined): number {
  if (limit === undefined) return LIST_DEFAULT_LIMIT;
  if (!Number.isInteger(limit) || limit < 1 || limit > BOUNDS.listLimit) {
    throw invalid('limit', `(${echo(limit)}) must be in [1, ${BOUNDS.listLimit}] (omit it for ${LIST_DEFAULT_LIMIT})`);
  }
  return limit;
}

export function algorithmOf(job: Pick<Job, 'request' | 'plan'>): string {
  if (job.plan?.algorithm) return job.plan.algorithm;
  const r = job.request;
  return r?.random ? 'random' : r?.zeroOrder ? 'zero_order' : r?.paths ? 'paths' : '';
}

export interface JobFilter {
  state?: string;
  client?: string;
  algorithm?: string;
  model?: string;
  limit?: number;
}

const num = (s: string | undefined): number => (s ? Number(s) : 0);

/** The result without image bytes: each output's PNG is at /admin/jobs/<id>/outputs/<rank>.png. */
export function resultView(jobId: string, r: Result) {
  return {
    accounting: r.accounting,
    wallSeconds: r.wallSeconds,
    outputs: r.outputs.map((o, i) => ({
      rank: o.rank,
      candidateId: o.candidateId,
      scores: o.scores,
      png: o.png.length > 0 ? `/admin/jobs/${encodeURIComponent(jobId)}/outputs/${i}.png` : null,
      recipe: o.recipe,
    })),
    candidates: r.candidates.length,
  };
}

export function planView(p: Plan | undefined) {
  if (!p) return undefined;
  const { request: _request, ...rest } = Plan.toJSON(p) as Record<string, unknown>;
  return rest;
}

export function roundView(r: Round) {
  return Round.toJSON(r);
}

/** One SearchEvent as the dashboard's server-sent event. */
export function eventView(e: SearchEvent): { type: 'plan' | 'round' | 'result'; data: unknown } | undefined {
  if (e.plan) return { type: 'plan', data: planView(e.plan) };
  if (e.round) return { type: 'round', data: roundView(e.round) };
  if (e.result) return { type: 'result', data: resultView(e.jobId, e.result) };
  return undefined;
}

export function jobSummary(j: Job) {
  const acc = j.result?.accounting;
  return {
    id: j.id,
    state: stateName(j.state),
    clientId: j.request?.clientId || 'anonymous',
    model: j.request?.model || j.plan?.request?.model || '',
    algorithm: algorithmOf(j),
    classLabel: j.request?.condition?.classLabel,
    roundsDone: j.roundsDone,
    rounds: j.plan?.rounds ?? 0,
    nfesSpent: num(j.nfesSpent),
    plannedSearchNfes: num(j.plan?.searchNfes),
    plannedTotalNfes: num(j.plan?.totalNfes),
    budgetNfes: num(j.plan?.budgetNfes),
    totalNfes: acc ? num(acc.totalNfes) : undefined,
    error: j.error || undefined,
    createdAt: j.createdAt,
    finishedAt: j.finishedAt || undefined,
  };
}

export interface UsageRow {
  id: string;
  clientId: string;
  state: string;
  plannedSearchNfes: number;
  searchNfes: number;
  finalNfes: number;
  recoveryNfes: number;
  totalNfes: number;
  budgetNfes: number;
}

export function usageOf(j: Job): UsageRow {
  const acc = j.result?.accounting;
  const search = acc ? num(acc.searchNfes) : num(j.nfesSpent);
  const final = acc ? num(acc.finalNfes) : 0;
  const recovery = acc ? num(acc.recoveryNfes) : 0;
  return {
    id: j.id,
    clientId: j.request?.clientId || 'anonymous',
    state: stateName(j.state),
    plannedSearchNfes: num(j.plan?.searchNfes),
    searchNfes: search,
    finalNfes: final,
    recoveryNfes: recovery,
    totalNfes: acc ? num(acc.totalNfes) : search,
    budgetNfes: num(j.plan?.budgetNfes),
  };
}

const ALL = 100_000;
const within = <T>(p: Promise<T>, ms: number, fallback: T): Promise<T> =>
  Promise.race([p.catch(() => fallback), new Promise<T>((r) => setTimeout(() => r(fallback), ms).unref())]);

@Injectable()
export class AdminService {
  constructor(readonly jobs: JobsService, readonly workers: WorkerService) {}

  /** Every job the registry keeps, newest first. */
  allJobs(state = JobState.JOB_STATE_UNSPECIFIED): Job[] {
    return this.jobs.list(state, ALL);
  }

  listJobs(f: JobFilter) {
    const limit = parseLimit(f.limit);
    const out = this.allJobs(parseState(f.state)).filter((j) =>
      (!f.client || (j.request?.clientId || 'anonymous') === f.client)
      && (!f.algorithm || algorithmOf(j) === f.algorithm)
      && (!f.model || (j.request?.model || '') === f.model));
    return { jobs: out.slice(0, limit).map(jobSummary), total: out.length, counts: this.jobs.counts() };
  }

  jobDetail(id: string) {
    const j = this.jobs.get(id);
    return {
      ...jobSummary(j),
      request: j.request ? (JSONSafe(j.request)) : undefined,
      plan: planView(j.plan),
      result: j.result ? resultView(j.id, j.result) : undefined,
    };
  }

  /** PNG bytes of output `index` of a finished job (by id and index only: nothing reaches the file system). */
  outputPng(id: string, index: number): Buffer | undefined {
    const out = this.jobs.get(id).result?.outputs[index];
    return out && out.png.length > 0 ? Buffer.from(out.png) : undefined;
  }

  usage(client?: string) {
    const rows = this.allJobs().map(usageOf).filter((r) => !client || r.clientId === client);
    const zero = () => ({ jobs: 0, plannedSearchNfes: 0, searchNfes: 0, finalNfes: 0, recoveryNfes: 0, totalNfes: 0 });
    const totals = zero();
    const byClient: Record<string, ReturnType<typeof zero>> = {};
    for (const r of rows) {
      for (const t of [totals, (byClient[r.clientId] ??= zero())]) {
        t.jobs++;
        t.plannedSearchNfes += r.plannedSearchNfes;
        t.searchNfes += r.searchNfes;
        t.finalNfes += r.finalNfes;
        t.recoveryNfes += r.recoveryNfes;
        t.totalNfes += r.totalNfes;
      }
    }
    return { totals, byClient, jobs: rows };
  }

  /** Health and Describe of every worker (a worker that does not answer in 2 s shows as not serving). */
  async workerViews() {
    const health = await this.workers.health();
    return Promise.all(health.map(async (h, i) => {
      const w = this.workers.workers[i];
      const d = w && h.serving ? await within(w.rpc.call('describe', {}), 2_000, undefined) : undefined;
      return {
        ...h,
        calls: w?.rpc.calls ?? 0,
        device: d?.device,
        maxBatch: d?.maxBatch,
        memoryUsedBytes: d ? num(d.memoryUsedBytes) : undefined,
        memoryCapBytes: d ? num(d.memoryCapBytes) : undefined,
        models: d?.models.map((m) => ({ name: m.name, family: m.family, sampleShape: m.sampleShape.map(Number), numClasses: m.numClasses, numParameters: num(m.numParameters) })) ?? [],
        verifiers: d?.verifiers.map((v) => ({ name: v.name, heldOut: v.heldOut })) ?? [],
        versions: d?.versions ?? {},
      };
    }));
  }
}

function JSONSafe<T>(x: T): unknown {
  return JSON.parse(JSON.stringify(x, (_k, v) => (v instanceof Uint8Array ? `<${v.length} bytes>` : v)));
}

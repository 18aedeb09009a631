// Proof (a): 50 concurrent searches from 5 clients (separate channels, client ids and tokens' sessions)
// against the real orchestrator and worker on loopback, all correct and accounted: every stream is
// plan -> rounds -> result, every account equals its plan, every image equals the one the same request
// gives alone (determinism under load), and the admin endpoint's usage and Prometheus totals equal the
// sum of the accounts.
import { JobState, Result, SearchEvent } from '../src/gen/noisesearch/search/v1/search';
import { api, kindOf, searchClient } from '../src/cli/client';
import { WorkerService } from '../src/worker/worker.service';
import type { Orchestrator } from '../src/main';
import { ADMIN, READ, http, publish, small, startWithTokens } from './ops-util';

jest.setTimeout(240_000);

const CLIENTS = 5;
const PER_CLIENT = 10;
const SEEDS = 10;

let orch: Orchestrator & { httpUrl: string };

beforeAll(async () => {
  orch = await startWithTokens({ maxRunningJobs: 8 });
}, 180_000);

afterAll(async () => {
  await orch?.close();
});

it(`${CLIENTS * PER_CLIENT} concurrent searches from ${CLIENTS} clients: all correct and accounted`, async () => {
  // References: each seed alone, before the load.
  const refClient = searchClient(orch.grpcAddress, { token: ADMIN });
  const reference = new Map<number, Buffer>();
  let referenceNfes = 0;
  let referenceSearch = 0;
  for (let s = 0; s < SEEDS; s++) {
    const ev = await api(refClient).search(small(1000 + s, { clientId: 'reference' }));
    const r = ev[ev.length - 1].result!;
    reference.set(s, Buffer.from(r.outputs[0].png));
    referenceNfes += Number(r.accounting!.totalNfes);
    referenceSearch += Number(r.accounting!.searchNfes);
  }
  refClient.close();

  const channels = Array.from({ length: CLIENTS }, () => searchClient(orch.grpcAddress, { token: ADMIN }));
  const t0 = Date.now();
  const runs = await Promise.all(channels.flatMap((c, ci) => Array.from({ length: PER_CLIENT }, async (_, i) => {
    const seedIndex = (ci * PER_CLIENT + i) % SEEDS;
    const started = Date.now();
    const events: SearchEvent[] = await api(c).search(small(1000 + seedIndex, { clientId: `load-${ci}` }));
    return { ci, seedIndex, events, ms: Date.now() - started };
  })));
  const wallMs = Date.now() - t0;
  for (const c of channels) c.close();

  let searchSum = 0;
  let totalSum = 0;
  const perClient: Record<string, number> = {};
  for (const { ci, seedIndex, events } of runs) {
    const kinds = events.map(kindOf);
    expect(kinds[0]).toBe('plan');
    expect(kinds[kinds.length - 1]).toBe('result');
    const plan = events[0].plan!;
    expect(kinds.filter((k) => k === 'round').length).toBe(plan.rounds);
    const result: Result = events[events.length - 1].result!;
    const acc = result.accounting!;
    expect(acc.searchNfes).toBe(plan.searchNfes);
    expect(acc.plannedSearchNfes).toBe(plan.searchNfes);
    expect(acc.finalNfes).toBe(plan.finalNfes);
    expect(Number(acc.totalNfes)).toBe(Number(acc.searchNfes) + Number(acc.finalNfes));
    expect(acc.recoveryNfes).toBe('0');
    expect(Buffer.compare(Buffer.from(result.outputs[0].png), reference.get(seedIndex)!)).toBe(0);
    searchSum += Number(acc.searchNfes);
    totalSum += Number(acc.totalNfes);
    perClient[`load-${ci}`] = (perClient[`load-${ci}`] ?? 0) + Number(acc.totalNfes);
  }
  const ids = new Set(runs.map((r) => r.events[0].jobId));
  expect(ids.size).toBe(CLIENTS * PER_CLIENT);

  // The registry: every job succeeded; nothing queued or running; the worker idle.
  const jobs = (await api(searchClient(orch.grpcAddress, { token: READ })).list(JobState.JOB_STATE_UNSPECIFIED, 1000)).jobs;
  const loadJobs = jobs.filter((j) => ids.has(j.id));
  expect(loadJobs.length).toBe(CLIENTS * PER_CLIENT);
  expect(loadJobs.every((j) => j.state === JobState.JOB_STATE_SUCCEEDED)).toBe(true);
  expect(orch.app.get(WorkerService).workers[0].rpc.inFlight).toBe(0);

  // The admin endpoint accounts the same NFEs: per client and in total; Prometheus too.
  const usage = (await http(`${orch.httpUrl}/admin/usage`, { token: READ })).body;
  for (const [client, nfes] of Object.entries(perClient)) expect(usage.byClient[client].totalNfes).toBe(nfes);
  expect(usage.totals.totalNfes).toBe(totalSum + referenceNfes);
  expect(usage.totals.jobs).toBe(CLIENTS * PER_CLIENT + SEEDS);
  const metrics: string = (await http(`${orch.httpUrl}/metrics`, { token: READ })).body;
  const metric = (re: RegExp) => Number(re.exec(metrics)?.[1]);
  expect(metric(/^noisesearch_nfes_total\{kind="search"\} (\d+)/m)).toBe(searchSum + referenceSearch);
  expect(metric(/^noisesearch_jobs_finished_total\{state="succeeded"\} (\d+)/m)).toBe(CLIENTS * PER_CLIENT + SEEDS);
  expect(metric(/^noisesearch_grpc_requests_total\{method="\/noisesearch.search.v1.Search\/Search",code="OK"\} (\d+)/m)).toBe(CLIENTS * PER_CLIENT + SEEDS);

  const ms = runs.map((r) => r.ms).sort((a, b) => a - b);
  publish('load', {
    searches: runs.length, clients: CLIENTS, distinctSeeds: SEEDS, maxRunningJobs: 8,
    request: 'random n=2, Euler 2 steps, guidance 1 (sit-fmnist)',
    wallSeconds: wallMs / 1000, searchesPerSecond: Number((runs.length / (wallMs / 1000)).toFixed(2)),
    latencyMs: { p50: ms[ms.length >> 1], p95: ms[Math.floor(ms.length * 0.95)], max: ms[ms.length - 1] },
    nfes: { search: searchSum, total: totalSum }, allAccountsEqualPlans: true, allImagesEqualAloneRuns: true,
  });
});

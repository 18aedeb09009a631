// Prometheus metrics (prom-client, one registry per app so that several orchestrators can live in one
// process): jobs by state, NFEs spent (search / final / recovery) and jobs finished since start,
// workers (up, calls in flight, leases, tensor memory), gRPC calls by method and status code, and
// the process's own metrics. Job counters are brought up to date from the registry at every scrape
// and every 5 s (a finished job is counted once).
import { Injectable, OnApplicationShutdown } from '@nestjs/common';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { JobState } from '../gen/noisesearch/search/v1/search';
import { GrpcCallStats } from '../auth/grpc-auth';
import { AdminService, STATE_NAMES, stateName, usageOf } from './admin.service';

const TERMINAL = new Set([JobState.JOB_STATE_SUCCEEDED, JobState.JOB_STATE_FAILED, JobState.JOB_STATE_CANCELLED]);

@Injectable()
export class MetricsService implements OnApplicationShutdown {
  readonly registry = new Registry();
  private readonly counted = new Set<string>();
  private readonly timer: NodeJS.Timeout;
  private readonly nfes: Counter<'kind'>;
  private readonly finished: Counter<'state'>;
  private readonly grpcSeen = new Map<string, number>();
  private readonly grpcCalls: Counter<'method' | 'code'>;

  constructor(private readonly admin: AdminService, private readonly stats: GrpcCallStats) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'noisesearch_' });
    this.nfes = new Counter({ name: 'noisesearch_nfes_total', help: 'NFEs spent by finished jobs since start (search, final, recovery = spent again after a worker fault)', labelNames: ['kind'], registers });
    this.finished = new Counter({ name: 'noisesearch_jobs_finished_total', help: 'jobs that reached a final state since start', labelNames: ['state'], registers });
    this.grpcCalls = new Counter({ name: 'noisesearch_grpc_requests_total', help: 'public gRPC calls by method and status code', labelNames: ['method', 'code'], registers });
    for (const kind of ['search', 'final', 'recovery']) this.nfes.inc({ kind }, 0);
    const self = this;
    new Gauge({
      name: 'noisesearch_jobs', help: 'jobs kept by the registry, by state', labelNames: ['state'], registers,
      collect() {
        const by: Record<string, number> = Object.fromEntries(STATE_NAMES.map((s) => [s, 0]));
        for (const j of self.admin.allJobs()) by[stateName(j.state)] = (by[stateName(j.state)] ?? 0) + 1;
        for (const [state, v] of Object.entries(by)) this.set({ state }, v);
        self.update();
      },
    });
    new Gauge({
      name: 'noisesearch_nfes_in_flight', help: 'search NFEs spent so far by running jobs', registers,
      collect() {
        this.set(self.admin.allJobs(JobState.JOB_STATE_RUNNING).reduce((s, j) => s + Number(j.nfesSpent || 0), 0));
      },
    });
    const workerGauge = (name: string, help: string) => new Gauge({ name, help, labelNames: ['address'], registers });
    const up = workerGauge('noisesearch_worker_up', '1 when the worker answers its health check SERVING');
    const inFlight = workerGauge('noisesearch_worker_in_flight', 'worker calls in flight');
    const leases = workerGauge('noisesearch_worker_leases', 'searches holding the worker');
    const used = workerGauge('noisesearch_worker_memory_used_bytes', 'tensor store memory in use on the worker');
    const cap = workerGauge('noisesearch_worker_memory_cap_bytes', 'tensor store memory cap of the worker');
    // One Describe per scrape for all worker gauges.
    const scrape = new Gauge({
      name: 'noisesearch_workers', help: 'workers configured or spawned', registers,
      async collect() {
        const views = await self.admin.workerViews();
        this.set(views.length);
        for (const g of [up, inFlight, leases, used, cap]) g.reset();
        for (const w of views) {
          up.set({ address: w.address }, w.serving ? 1 : 0);
          inFlight.set({ address: w.address }, w.inFlight);
          leases.set({ address: w.address }, w.leases);
          if (w.memoryUsedBytes !== undefined) used.set({ address: w.address }, w.memoryUsedBytes);
          if (w.memoryCapBytes !== undefined) cap.set({ address: w.address }, w.memoryCapBytes);
        }
      },
    });
    void scrape;
    this.timer = setInterval(() => this.update(), 5_000);
    this.timer.unref();
  }

  /** Counts newly finished jobs and new gRPC call outcomes. */
  update(): void {
    const listed = new Set<string>();
    for (const j of this.admin.allJobs()) {
      listed.add(j.id);
      if (!TERMINAL.has(j.state) || this.counted.has(j.id)) continue;
      this.counted.add(j.id);
      const u = usageOf(j);
      this.finished.inc({ state: stateName(j.state) });
      this.nfes.inc({ kind: 'search' }, u.searchNfes);
      this.nfes.inc({ kind: 'final' }, u.finalNfes);
      this.nfes.inc({ kind: 'recovery' }, u.recoveryNfes);
    }
    for (const id of this.counted) if (!listed.has(id)) this.counted.delete(id);
    for (const [key, e] of this.stats.counts) {
      const before = this.grpcSeen.get(key) ?? 0;
      if (e.count > before) this.grpcCalls.inc({ method: e.method, code: e.code }, e.count - before);
      this.grpcSeen.set(key, e.count);
    }
  }

  async text(): Promise<string> {
    this.update();
    return this.registry.metrics();
  }

  onApplicationShutdown(): void {
    clearInterval(this.timer);
  }
}

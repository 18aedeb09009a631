// Delivered throughput through the public API (issue 9), ratios measured interleaved in one run:
//  - c concurrent random searches of N = 4 against one search of N = 4c (c = 1, 4, 8, 16): the same sample-NFEs,
//    so the ratio is the one search's time over the c searches' time (target >= 0.8);
//  - the 50-search load shape of test/ops-load.e2e-spec.ts (5 clients x 10, random n = 2, Euler 2): sample-NFEs/s;
//  - a lone search of N = 1 and N = 4 against the same best-of-N as a plain in-process Python loop
//    (python-worker/scripts/plain_loop.py) at the same batch.
// Every figure comes with the load average (the machine is shared).
//   npm run bench:concurrency -- [--reps 2] [--reproducibility exact|fast] [--steps 10] [--skip load,lone]
import 'reflect-metadata';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { SearchRequest } from '../src/gen/noisesearch/search/v1/search';
import { Solver } from '../src/gen/noisesearch/worker/v1/worker';
import { api, searchClient } from '../src/cli/client';
import { loadConfig } from '../src/config/config';
import { startOrchestrator } from '../src/main';

const load = () => loadavg().map((x) => +x.toFixed(2));
// Between the two sides of a comparison: OpenMP threads of the process that just worked keep spinning for a
// while, and on 2 cores they would slow whichever side runs next.
const settle = () => new Promise((resolve) => setTimeout(resolve, 300));

function request(seed: number, n: number, steps: number): SearchRequest {
  return SearchRequest.fromPartial({
    model: 'sit-fmnist', condition: { classLabel: seed % 10 }, random: { n },
    searchSolver: { solver: Solver.SOLVER_EULER, steps, guidanceScale: 1 }, seed: String(seed),
  } as SearchRequest);
}

/** The plain loop, one process kept warm: `time(n)` answers its in-process seconds for a best-of-n. */
function plainLoop(steps: number): Promise<{ time(n: number): Promise<number>; close(): void }> {
  const child = spawn('python-worker/.venv/bin/python', ['python-worker/scripts/plain_loop.py', String(steps)],
    { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! });
  const waiting: ((line: string) => void)[] = [];
  lines.on('line', (l) => waiting.shift()?.(l));
  const next = () => new Promise<string>((resolve) => waiting.push(resolve));
  return next().then(() => ({
    async time(n: number) {
      const p = next();
      child.stdin!.write(`${n}\n`);
      return JSON.parse(await p).seconds as number;
    },
    close() { child.kill(); },
  }));
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      reps: { type: 'string', default: '2' },
      reproducibility: { type: 'string', default: 'exact' },
      steps: { type: 'string', default: '10' },
      concurrency: { type: 'string', default: '1,4,8,16' },
      skip: { type: 'string', default: '' },
    },
  });
  const reps = Number(values.reps);
  const steps = Number(values.steps);
  const skip = new Set(values.skip!.split(',').filter(Boolean));
  const dir = mkdtempSync(join(tmpdir(), 'noisesearch-bench-'));
  const workerConfig = join(dir, 'worker.json');
  writeFileSync(workerConfig, JSON.stringify({ device: 'cpu', reproducibility: values.reproducibility }));
  const orch = await startOrchestrator(loadConfig(process.env, {
    grpcAddress: '127.0.0.1:0', httpPort: 0, db: ':memory:', workerExtraArgs: ['--config', workerConfig],
  }), { logger: ['fatal', 'error', 'warn'] });
  const channels = Array.from({ length: 16 }, () => searchClient(orch.grpcAddress));
  const out: Record<string, unknown> = {
    benchmark: 'concurrency', reproducibility: values.reproducibility, steps, reps,
    maxRunningJobs: loadConfig(process.env).maxRunningJobs, loadAverageStart: load(),
  };
  let seed = 1;
  const search = async (c: number, n: number) => {
    const events = await api(channels[c % channels.length]).search(request(seed++, n, steps));
    const r = events[events.length - 1].result;
    if (!r) throw new Error('no result');
    return Number(r.accounting!.totalNfes);
  };
  try {
    await search(0, 4); // warm-up
    // 1. c concurrent searches of N = 4 against one search of N = 4c, interleaved, alternating which goes first.
    const rows = [];
    for (const c of values.concurrency!.split(',').map(Number)) {
      let concurrentS = 0, oneS = 0, concurrentNfes = 0, oneNfes = 0;
      const concurrent = async () => {
        const t = performance.now();
        const nfes = await Promise.all(Array.from({ length: c }, (_, i) => search(i, 4)));
        concurrentS += (performance.now() - t) / 1000;
        concurrentNfes += nfes.reduce((a, b) => a + b, 0);
      };
      const one = async () => {
        const t = performance.now();
        oneNfes += await search(0, 4 * c);
        oneS += (performance.now() - t) / 1000;
      };
      for (let i = 0; i < reps; i++) {
        if (i % 2 === 0) { await concurrent(); await settle(); await one(); } else { await one(); await settle(); await concurrent(); }
        await settle();
      }
      const row = {
        concurrency: c,
        concurrentSampleNfesPerS: +(concurrentNfes / concurrentS).toFixed(1),
        oneSearchSampleNfesPerS: +(oneNfes / oneS).toFixed(1),
        ratio: +((concurrentNfes / concurrentS) / (oneNfes / oneS)).toFixed(3),
        concurrentSeconds: +(concurrentS / reps).toFixed(3), oneSearchSeconds: +(oneS / reps).toFixed(3),
        loadAverage: load(),
      };
      rows.push(row);
      process.stderr.write(`${JSON.stringify(row)}\n`);
    }
    out.concurrency = { request: `random N=4 per search, Euler ${steps}, guidance 1`, target: 0.8, rows };

    // 2. The 50-search load shape.
    if (!skip.has('load')) {
      const t = performance.now();
      const nfes = await Promise.all(Array.from({ length: 50 }, (_, i) =>
        api(channels[i % 5]).search(SearchRequest.fromPartial({
          model: 'sit-fmnist', condition: { classLabel: i % 10 }, random: { n: 2 },
          searchSolver: { solver: Solver.SOLVER_EULER, steps: 2, guidanceScale: 1 }, seed: String(1000 + (i % 10)),
        } as SearchRequest)).then((ev) => Number(ev[ev.length - 1].result!.accounting!.totalNfes))));
      const s = (performance.now() - t) / 1000;
      const total = nfes.reduce((a, b) => a + b, 0);
      out.load50 = { request: 'random n=2, Euler 2 steps, guidance 1; 5 clients x 10', seconds: +s.toFixed(3),
        sampleNfes: total, sampleNfesPerS: +(total / s).toFixed(1), searchesPerS: +(50 / s).toFixed(2), target: 90,
        loadAverage: load() };
      process.stderr.write(`${JSON.stringify(out.load50)}\n`);
    }

    // 3. A lone search against the plain in-process loop at the same batch, interleaved.
    if (!skip.has('lone')) {
      const plain = await plainLoop(steps);
      const lone = [];
      try {
        for (const n of [1, 4]) {
          let apiS = 0, plainS = 0;
          for (let i = 0; i < reps + 1; i++) {
            let a = 0, p = 0;
            const viaApi = async () => { const t = performance.now(); await search(0, n); a = (performance.now() - t) / 1000; };
            const viaPlain = async () => { p = await plain.time(n); };
            if (i % 2 === 0) { await viaApi(); await settle(); await viaPlain(); } else { await viaPlain(); await settle(); await viaApi(); }
            await settle();
            if (i === 0) continue; // warm-up of this shape
            apiS += a;
            plainS += p;
          }
          lone.push({ n, apiSeconds: +(apiS / reps).toFixed(4), plainLoopSeconds: +(plainS / reps).toFixed(4),
            ratio: +(apiS / plainS).toFixed(2), loadAverage: load() });
        }
      } finally {
        plain.close();
      }
      out.lone = { request: `random N, Euler ${steps}, guidance 1, through the public API vs plain_loop.py`,
        targetFast: 1.3, rows: lone };
    }
    out.loadAverageEnd = load();
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  } finally {
    for (const c of channels) c.close();
    await orch.close();
  }
}

main().catch((e) => {
  process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});

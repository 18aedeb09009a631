// A standing fuzzer of the public gRPC API (issue 12), on loopback against a real orchestrator and
// worker: property-based (fast-check) SearchRequests for PlanSearch, Search and Submit, job calls
// (Get, Watch, Cancel, List), and raw bytes sent with grpc-js' generic client. For every input:
//   - the answer is OK or a documented status, and a refusal's message starts with the field it names;
//   - never INTERNAL or UNKNOWN;
//   - never OK with a non-finite number anywhere in the answer;
//   - a request ending in a client error made no worker call (spent nothing);
// and afterwards no job is left queued or running and the worker's store is empty.
// Bounded: NOISESEARCH_FUZZ_RUNS (default 250 inputs per property) and NOISESEARCH_FUZZ_SECONDS
// (default 90 s in all). The count of inputs tried is printed (and written to out/ops/fuzz.json).
// A failure prints its seed and path: add them to REGRESSIONS so that they are replayed every run.
import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import { Ensemble, JobState, SearchRequest } from '../src/gen/noisesearch/search/v1/search';
import { Solver } from '../src/gen/noisesearch/worker/v1/worker';
import { api, channelOptions, searchClient } from '../src/cli/client';
import { WorkerService } from '../src/worker/worker.service';
import { WorkerRpc } from '../src/worker/worker-rpc';
import { ADMIN, publish, sleep, startWithTokens } from './ops-util';
import type { Orchestrator } from '../src/main';

jest.setTimeout(600_000);

const S = grpc.status;
const RUNS = Number(process.env.NOISESEARCH_FUZZ_RUNS || 250);
const SECONDS = Number(process.env.NOISESEARCH_FUZZ_SECONDS || 90);
const SEED = Number(process.env.NOISESEARCH_FUZZ_SEED || Date.now() % 2 ** 31);

/**
 * Failures found so far, replayed on every run: [property, seed, path] as fast-check printed them
 * (valid while the arbitraries below are unchanged; when they change, keep the input in RAW_REGRESSIONS).
 */
const REGRESSIONS: [string, number, string][] = [];
/** Concrete inputs of past failures: [method, server-streaming, bytes as hex]. */
const RAW_REGRESSIONS: [string, boolean, string][] = [
  // Found with seed 859645673: undecodable bytes were refused without naming anything ("malformed request: ...").
  ['PlanSearch', false, '00'],
  ['Search', true, 'ff'],
  // Found with seed 864045238 (after the merge of the new algorithms).
  ['Search', true, '0348ae38da813a204010'],
];

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const PROPERTIES: Record<string, () => fc.IAsyncPropertyWithHooks<any>> = {};

let orch: Orchestrator & { httpUrl: string };
let client: ReturnType<typeof api>;
let raw: grpc.Client;
let pool: WorkerService;
let started = 0;
let deadline = 0;
const tried: Record<string, number> = {};
const codes: Record<string, number> = {};

/** A refusal's details start with the request field at fault (proto spelling), e.g. `verifiers[2].name`;
 *  `request` when the bytes do not decode at all. */
const NAMES_A_FIELD = /^(request|model|condition|client_id|seed|budget_nfes|num_outputs|ensemble|algorithm|verifiers|id|state|limit|return|random|zero_order|paths|successive_halving|feynman_kac|rollover_budget|search_solver|final_solver)(\[\d+\])?(\.[a-z_]+)*[ :]/;
/** Statuses a client may get, and what each must say. */
const CLIENT_ERRORS = new Set([S.INVALID_ARGUMENT, S.RESOURCE_EXHAUSTED, S.NOT_FOUND, S.FAILED_PRECONDITION]);

function nonFinite(x: unknown, path = '$'): string | undefined {
  if (typeof x === 'number') return Number.isFinite(x) ? undefined : `${path} = ${x}`;
  if (x && typeof x === 'object' && !Buffer.isBuffer(x) && !(x instanceof Uint8Array)) {
    for (const [k, v] of Object.entries(x)) {
      const bad = nonFinite(v, `${path}.${k}`);
      if (bad) return bad;
    }
  }
  return undefined;
}

function workerCalls(): number {
  return pool.workers.reduce((n, w) => n + w.rpc.calls, 0);
}

/** Runs one input; checks the invariants every answer must keep. */
async function judge(kind: string, input: unknown, call: () => Promise<unknown>, opts: { mayCancel?: boolean } = {}): Promise<void> {
  tried[kind] = (tried[kind] ?? 0) + 1;
  const before = workerCalls();
  let res: unknown;
  let err: (grpc.ServiceError & { events?: unknown[] }) | undefined;
  try {
    res = await call();
  } catch (e) {
    err = e as grpc.ServiceError;
  }
  const code = err ? err.code : S.OK;
  codes[S[code] ?? String(code)] = (codes[S[code] ?? String(code)] ?? 0) + 1;
  const where = `${kind} ${JSON.stringify(input, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : typeof v === 'string' && v.length > 80 ? `${v.slice(0, 80)}…(${v.length})` : v))}`;
  if (err && typeof err.code !== 'number') throw new Error(`${where}: not a gRPC status: ${String(err)}`);
  if (code === S.INTERNAL || code === S.UNKNOWN) throw new Error(`${where}: ${S[code]}: ${err!.details}`);
  if (code === S.OK) {
    const bad = nonFinite(res);
    if (bad) throw new Error(`${where}: OK with a non-finite number: ${bad}`);
    return;
  }
  if (code === S.CANCELLED && opts.mayCancel) return;
  if (!CLIENT_ERRORS.has(code)) throw new Error(`${where}: undocumented status ${S[code]}: ${err!.details}`);
  if (code === S.INVALID_ARGUMENT || code === S.RESOURCE_EXHAUSTED) {
    if (!NAMES_A_FIELD.test(err!.details)) throw new Error(`${where}: ${S[code]} does not name a field: ${err!.details}`);
  }
  if (err!.details.length > 1100) throw new Error(`${where}: a ${err!.details.length}-character message`);
  const nfeEvents = (err!.events ?? []).filter((e: any) => e.round || e.result);
  if (workerCalls() !== before || nfeEvents.length > 0) {
    throw new Error(`${where}: ${S[code]} (${err!.details}) after ${workerCalls() - before} worker calls`);
  }
}

// ---- arbitraries: mostly cheap and valid-ish, with every kind of bad value mixed in ----

const wildNumber = fc.oneof(
  fc.constantFrom(NaN, Infinity, -Infinity, -1, 0, 1e-300, 1e-12, 1e308, 2 ** 32, -0),
  fc.double(),
);
const wildUint = fc.oneof(fc.constantFrom(0, 1, 2, 4294967295, 65536), fc.nat({ max: 5 }), fc.nat());
const wildString = fc.oneof(
  { arbitrary: fc.constantFrom('', 'sit-fmnist', 'classifier-logit', 'feature-cosine', 'evaluator-logprob', 'no-such-thing', '../../etc/passwd', 'ä😀\u0000'), weight: 4 },
  { arbitrary: fc.string({ maxLength: 40 }), weight: 2 },
  { arbitrary: fc.integer({ min: 100, max: 6000 }).map((n) => 'x'.repeat(n)), weight: 1 },
);
const smallInt = fc.integer({ min: 1, max: 3 });
const level = fc.oneof({ arbitrary: fc.constantFrom(0.05, 0.1, 0.3, 0.5, 0.9, 1, 1e-12), weight: 10 }, { arbitrary: wildNumber, weight: 1 });

const solverArb = fc.record({
  solver: fc.oneof({ arbitrary: fc.constantFrom(Solver.SOLVER_EULER, Solver.SOLVER_HEUN, 0), weight: 20 }, { arbitrary: fc.integer({ min: -2, max: 9 }), weight: 1 }),
  steps: fc.oneof({ arbitrary: fc.integer({ min: 1, max: 3 }), weight: 20 }, { arbitrary: wildUint, weight: 1 }),
  guidanceScale: fc.option(fc.oneof({ arbitrary: fc.constantFrom(1, 0, 1.5, 4, 100), weight: 20 }, { arbitrary: wildNumber, weight: 1 }), { nil: undefined }),
}, { requiredKeys: [] });

const algorithmArb = fc.oneof(
  { arbitrary: fc.constant({}), weight: 1 }, // no algorithm at all: refused naming `algorithm`
  { arbitrary: fc.record({ random: fc.record({ n: fc.oneof({ arbitrary: smallInt, weight: 20 }, { arbitrary: wildUint, weight: 1 }) }) }), weight: 8 },
  { weight: 8, arbitrary: fc.record({
    zeroOrder: fc.record({
      n: fc.oneof({ arbitrary: smallInt, weight: 20 }, { arbitrary: wildUint, weight: 1 }),
      k: fc.oneof({ arbitrary: smallInt, weight: 20 }, { arbitrary: wildUint, weight: 1 }),
      tau: fc.option(fc.oneof({ arbitrary: fc.constantFrom(0.95, 0.5, 0.99), weight: 10 }, { arbitrary: fc.oneof(fc.constantFrom(1, -1), wildNumber), weight: 1 }), { nil: undefined }),
      acceptNonImproving: fc.boolean(),
      maxRejections: fc.option(fc.oneof({ arbitrary: smallInt, weight: 10 }, { arbitrary: wildUint, weight: 1 }), { nil: undefined }),
    }),
  }) },
  { weight: 8, arbitrary: fc.record({
    paths: fc.record({
      n: fc.oneof({ arbitrary: smallInt, weight: 20 }, { arbitrary: wildUint, weight: 1 }),
      m: fc.oneof({ arbitrary: smallInt, weight: 20 }, { arbitrary: wildUint, weight: 1 }),
      sigmaStart: fc.option(level, { nil: undefined }),
      deltaForward: fc.option(level, { nil: undefined }),
      deltaBackward: fc.option(level, { nil: undefined }),
      backwardSteps: fc.oneof({ arbitrary: fc.integer({ min: 0, max: 2 }), weight: 10 }, { arbitrary: wildUint, weight: 1 }),
    }),
  }) },
  { arbitrary: fc.constant({ random: { n: 1 }, zeroOrder: { n: 1, k: 1, acceptNonImproving: false } }), weight: 1 }, // two at once
)

const requestArb = fc.record({
  model: fc.oneof({ arbitrary: fc.constantFrom('', 'sit-fmnist'), weight: 20 }, { arbitrary: wildString, weight: 1 }),
  condition: fc.oneof(
    { arbitrary: fc.record({ classLabel: fc.integer({ min: 0, max: 9 }) }), weight: 20 },
    { arbitrary: fc.constant(undefined), weight: 1 },
    { arbitrary: fc.record({ classLabel: fc.integer({ min: -5, max: 2 ** 31 - 1 }) }), weight: 1 },
    { arbitrary: fc.record({ prompt: wildString }), weight: 1 },
    { arbitrary: fc.constant({ unconditional: true }), weight: 1 },
  ),
  algorithm: algorithmArb,
  verifiers: fc.oneof(
    { arbitrary: fc.constant([]), weight: 12 },
    { arbitrary: fc.array(fc.record({ name: wildString, weight: fc.oneof({ arbitrary: fc.constantFrom(0, 1, 2), weight: 20 }, { arbitrary: wildNumber, weight: 1 }) }), { maxLength: 4 }), weight: 2 },
    { arbitrary: fc.integer({ min: 17, max: 40 }).map((n) => Array.from({ length: n }, () => ({ name: 'classifier-logit', weight: 1 }))), weight: 1 },
  ),
  ensemble: fc.oneof({ arbitrary: fc.constantFrom(0, 1, 2, 3), weight: 20 }, { arbitrary: fc.integer({ min: -3, max: 99 }), weight: 1 }),
  selectWithHeldOut: fc.boolean(),
  budgetNfes: fc.oneof({ arbitrary: fc.constantFrom('0', '0', '3', '40', '10000000', '10000001'), weight: 20 }, { arbitrary: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String), weight: 1 }),
  shrinkToFit: fc.boolean(),
  searchSolver: fc.option(solverArb, { nil: undefined }),
  finalSolver: fc.option(solverArb, { nil: undefined, freq: 2 }),
  seed: fc.oneof(fc.constantFrom('0', '7', '18446744073709551615'), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String)),
  numOutputs: fc.oneof({ arbitrary: fc.constantFrom(0, 1, 2), weight: 20 }, { arbitrary: wildUint, weight: 1 }),
  return: fc.option(fc.record({ png: fc.boolean(), rawTensor: fc.boolean(), candidateScores: fc.boolean(), pngUpscale: fc.oneof({ arbitrary: fc.constantFrom(0, 1, 2), weight: 20 }, { arbitrary: fc.oneof(fc.constant(17), wildUint), weight: 1 }) }), { nil: undefined }),
  clientId: fc.oneof({ arbitrary: fc.constantFrom('', 'fuzz'), weight: 20 }, { arbitrary: wildString, weight: 1 }),
}).map(({ algorithm, ...rest }) => SearchRequest.fromPartial({ ...rest, ...algorithm } as SearchRequest));

/** Cheap enough to run for real (a few NFEs on the CPU). */
function cheap(plan: { totalNfes?: string } | undefined): boolean {
  return !!plan && Number(plan.totalNfes) <= 40;
}

function rawCall(method: string, bytes: Uint8Array, stream: boolean): Promise<unknown> {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${ADMIN}`);
  const path = `/noisesearch.search.v1.Search/${method}`;
  const opts = { deadline: Date.now() + 30_000 };
  return new Promise((resolve, reject) => {
    if (!stream) {
      raw.makeUnaryRequest(path, (b: Buffer) => b, (b: Buffer) => b, Buffer.from(bytes), md, opts, (e, r) => (e ? reject(e) : resolve(r)));
      return;
    }
    const call = raw.makeServerStreamRequest(path, (b: Buffer) => b, (b: Buffer) => b, Buffer.from(bytes), md, opts);
    const events: unknown[] = [];
    call.on('data', (d) => events.push(d));
    call.on('error', (e) => reject(Object.assign(e, { events: [] })));
    call.on('end', () => resolve(events.length));
  });
}

const budget = () => ({ interruptAfterTimeLimit: Math.max(1_000, deadline - Date.now()), markInterruptAsFailure: false });

function check<Ts extends unknown[]>(name: string, prop: fc.IAsyncPropertyWithHooks<Ts>, runs: number): Promise<void> {
  return fc.assert(prop, { numRuns: runs, seed: SEED, ...budget() }).catch((e) => {
    throw new Error(`${name}: ${e instanceof Error ? e.message : e}\n(replay: add [${JSON.stringify(name)}, seed, path] from above to REGRESSIONS)`);
  });
}

beforeAll(async () => {
  // The spawned worker's token: random per process when none is configured (proven below).
  const saved = process.env.NOISESEARCH_WORKER_TOKEN;
  delete process.env.NOISESEARCH_WORKER_TOKEN;
  try {
    orch = await startWithTokens({ maxRunningJobs: 2 });
  } finally {
    if (saved !== undefined) process.env.NOISESEARCH_WORKER_TOKEN = saved;
  }
  pool = orch.app.get(WorkerService);
  client = api(searchClient(orch.grpcAddress, { token: ADMIN }));
  raw = new grpc.Client(orch.grpcAddress, grpc.credentials.createInsecure(), channelOptions);
  started = Date.now();
  deadline = started + SECONDS * 1000;
}, 180_000);

afterAll(async () => {
  raw?.close();
  await orch?.close();
  const inputs = Object.values(tried).reduce((a, b) => a + b, 0);
  publish('fuzz', { inputs, seconds: Math.round((Date.now() - started) / 100) / 10, seed: SEED, byKind: tried, byCode: codes });
});

describe('the spawned worker', () => {
  it('takes a random per-process token: calls without it are UNAUTHENTICATED', async () => {
    const w = pool.workers[0];
    expect(w.local?.token).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(w.local?.token).not.toBe(process.env.NOISESEARCH_WORKER_TOKEN);
    const none = new WorkerRpc(w.rpc.address, { token: '', retries: 0 });
    const wrong = new WorkerRpc(w.rpc.address, { token: 'not-the-token', retries: 0 });
    try {
      await expect(none.call('describe', {})).rejects.toMatchObject({ code: S.UNAUTHENTICATED });
      await expect(wrong.call('describe', {})).rejects.toMatchObject({ code: S.UNAUTHENTICATED });
      expect((await w.rpc.call('describe', {})).models.length).toBeGreaterThan(0);
    } finally {
      none.close();
      wrong.close();
    }
  });
});

describe('fuzz the public API', () => {
  it('PlanSearch (and Search / Submit + Cancel of what plans cheaply, Search of what is refused)', async () => {
    PROPERTIES['SearchRequest'] = () => fc.asyncProperty(requestArb, fc.nat({ max: 9 }), async (req, dice) => {
      let plan: Awaited<ReturnType<typeof client.plan>> | undefined;
      await judge('PlanSearch', req, async () => (plan = await client.plan(req)));
      if (cheap(plan) && dice < 4) {
        await judge('Search', req, () => client.search(req));
      } else if (cheap(plan) && dice < 6) {
        await judge('Submit+Cancel', req, async () => {
          const job = await client.submit(req);
          return client.cancel(job.id);
        }, { mayCancel: true });
      } else if (!plan && dice < 3) {
        await judge('Search', req, () => client.search(req)); // refused: must spend nothing
      }
    });
    await check('SearchRequest', PROPERTIES['SearchRequest'](), RUNS);
  });

  it('Get, Watch, Cancel and List with any id, state and limit', async () => {
    const idArb = fc.oneof(fc.constantFrom('', 'job-nope', 'job-00000000-0000-0000-0000-000000000000'), wildString);
    PROPERTIES['job calls'] = () => fc.asyncProperty(idArb, fc.integer({ min: -3, max: 12 }), wildUint, async (id, state, limit) => {
      await judge('Get', id, () => client.get(id));
      await judge('Watch', id, () => client.watch(id));
      await judge('Cancel', id, () => client.cancel(id));
      await judge('List', { state, limit }, () => client.list(state as JobState, limit));
    });
    await check('job calls', PROPERTIES['job calls'](), RUNS);
  });

  it('raw bytes to every method (grpc-js generic client)', async () => {
    const bytesArb = fc.oneof(
      fc.uint8Array({ maxLength: 64 }),
      // A valid request with garbage appended or a byte flipped: deeper into the decoder.
      fc.tuple(requestArb, fc.uint8Array({ maxLength: 16 }), fc.nat()).map(([r, tail, at]) => {
        const b = Buffer.concat([Buffer.from(SearchRequest.encode(r).finish()), Buffer.from(tail)]);
        if (b.length > 0) b[at % b.length] ^= 0xff;
        return new Uint8Array(b);
      }),
    );
    const methods: [string, boolean][] = [['PlanSearch', false], ['Submit', false], ['Get', false], ['Cancel', false], ['List', false], ['Search', true], ['Watch', true]];
    PROPERTIES['raw bytes'] = () => fc.asyncProperty(bytesArb, fc.constantFrom(...methods), async (bytes, [method, stream]) => {
      // Submit / Search of bytes that happen to decode into a cheap valid request do run: let them.
      await judge(`raw ${method}`, Buffer.from(bytes).toString('hex').slice(0, 200), () => rawCall(method, bytes, stream), { mayCancel: true })
        .catch(async (e) => {
          // A raw Submit/Search that decoded into a runnable request spends legitimately: judge again by its plan.
          if ((method === 'Submit' || method === 'Search') && /after \d+ worker calls/.test(String(e))) {
            const plan = await client.plan(SearchRequest.decode(bytes)).catch(() => undefined);
            if (plan) return;
          }
          throw e;
        });
    });
    await check('raw bytes', PROPERTIES['raw bytes'](), RUNS);
  });

  for (const [name, seed, path] of REGRESSIONS) {
    it(`regression: ${name} seed ${seed} path ${path}`, async () => {
      await fc.assert(PROPERTIES[name](), { seed, path, endOnFailure: true });
    });
  }
  it.each(RAW_REGRESSIONS)('regression: raw %s %s %s', async (method, stream, hex) => {
    await judge(`raw ${method}`, hex, () => rawCall(method, Buffer.from(hex, 'hex'), stream));
  });

  it('afterwards: no job left queued or running, the worker store empty', async () => {
    const t0 = Date.now();
    const open = async () => (await client.list(JobState.JOB_STATE_RUNNING, 1000)).jobs.length + (await client.list(JobState.JOB_STATE_QUEUED, 1000)).jobs.length;
    let n = await open();
    while (n > 0 && Date.now() - t0 < 60_000) {
      await sleep(200);
      n = await open();
    }
    expect(n).toBe(0);
    let used = (await pool.workers[0].rpc.call('describe', {})).memoryUsedBytes;
    while (used !== '0' && Date.now() - t0 < 60_000) {
      await sleep(200);
      used = (await pool.workers[0].rpc.call('describe', {})).memoryUsedBytes;
    }
    expect(used).toBe('0');
    const inputs = Object.values(tried).reduce((a, b) => a + b, 0);
    process.stdout.write(`fuzz: ${inputs} inputs in ${((Date.now() - started) / 1000).toFixed(1)} s (seed ${SEED}): ${JSON.stringify(tried)} ${JSON.stringify(codes)}\n`);
    expect(inputs).toBeGreaterThan(0);
  });
});

// Proof (c): a battery of bad input against the real orchestrator and worker, on loopback — malformed
// messages (raw bytes), NaN and negative values, huge N and budgets, unknown names, oversized payloads,
// slow and vanishing clients, wrong and missing tokens (gRPC and HTTP) — every one answered with the
// right code, and nothing lost: no job left running, the worker idle and empty, the service still
// serving correct searches. Then TLS, the generated per-process token and NOISESEARCH_AUTH=off.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { JobState, SearchEvent, SearchRequest } from '../src/gen/noisesearch/search/v1/search';
import { api, channelOptions, collect, kindOf, searchClient } from '../src/cli/client';
import { loadConfig } from '../src/config/config';
import { startOrchestrator, Orchestrator } from '../src/main';
import { WorkerService } from '../src/worker/worker.service';
import { WorkerRpc } from '../src/worker/worker-rpc';
import { ADMIN, MEMORY, READ, WRONG, euler, http, publish, sleep, small, startWithTokens } from './ops-util';

jest.setTimeout(240_000);

const MiB = 1024 * 1024;
const S = grpc.status;
const M = (name: string) => `/noisesearch.search.v1.Search/${name}`;

let orch: Orchestrator & { httpUrl: string };
let workerAddress: string;
let wr: WorkerRpc;
const clients: grpc.Client[] = [];
const tried: { group: string; input: string; expected: string; got: string }[] = [];

function client(token: string | undefined) {
  const c = searchClient(orch.grpcAddress, { token: token ?? '' });
  clients.push(c);
  return api(c);
}

async function codeOf(p: Promise<unknown>): Promise<grpc.status> {
  return p.then(() => S.OK, (e) => (typeof e?.code === 'number' ? e.code : -1));
}

async function check(group: string, input: string, p: Promise<unknown>, expected: grpc.status | grpc.status[]): Promise<void> {
  const code = await codeOf(p);
  const want = Array.isArray(expected) ? expected : [expected];
  tried.push({ group, input, expected: want.map((c) => S[c]).join('|'), got: S[code] ?? String(code) });
  expect({ input, code: S[code] }).toEqual({ input, code: want.includes(code) ? S[code] : S[want[0]] });
}

/** Raw bytes to a unary method (no client-side encoding). */
function rawUnary(method: string, bytes: Buffer, token = ADMIN): Promise<unknown> {
  const c = new grpc.Client(orch.grpcAddress, grpc.credentials.createInsecure(), channelOptions);
  const md = new grpc.Metadata();
  if (token) md.set('authorization', `Bearer ${token}`);
  return new Promise((resolve, reject) => {
    c.makeUnaryRequest(method, (b: Buffer) => b, (b: Buffer) => b, bytes, md, { deadline: Date.now() + 20_000 }, (err, res) => {
      c.close();
      if (err) reject(err); else resolve(res);
    });
  });
}

/** Raw bytes to a server-streaming method; resolves at the end of the stream. */
function rawStream(method: string, bytes: Buffer, token = ADMIN): Promise<unknown> {
  const c = new grpc.Client(orch.grpcAddress, grpc.credentials.createInsecure(), channelOptions);
  const md = new grpc.Metadata();
  if (token) md.set('authorization', `Bearer ${token}`);
  return new Promise((resolve, reject) => {
    const call = c.makeServerStreamRequest(method, (b: Buffer) => b, (b: Buffer) => b, bytes, md, { deadline: Date.now() + 20_000 });
    call.on('data', () => undefined);
    call.on('error', (e) => { c.close(); reject(e); });
    call.on('end', () => { c.close(); resolve(undefined); });
  });
}

const enc = (r: Partial<SearchRequest>) => Buffer.from(SearchRequest.encode(small(1, r)).finish());
/** A varint field (number << 3 | 0) holding -1 as a 64-bit two's complement (what a negative int64 encodes to). */
const negativeVarint = (field: number) => Buffer.from([field << 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);

beforeAll(async () => {
  orch = await startWithTokens({ maxMessageBytes: 4 * MiB, maxRunningJobs: 2 });
  workerAddress = orch.app.get(WorkerService).workers[0].rpc.address;
  wr = new WorkerRpc(workerAddress);
}, 180_000);

afterAll(async () => {
  for (const c of clients) c.close();
  wr?.close();
  await orch?.close();
  const byCode: Record<string, number> = {};
  for (const t of tried) byCode[t.got] = (byCode[t.got] ?? 0) + 1;
  const byGroup: Record<string, number> = {};
  for (const t of tried) byGroup[t.group] = (byGroup[t.group] ?? 0) + 1;
  publish('bad-input', { inputs: tried.length, byGroup, byCode, all: tried });
});

describe('malformed messages (raw bytes)', () => {
  const garbage: [string, Buffer][] = [
    ['truncated length-delimited field', Buffer.from([0x0a, 0x10, 0x41])],
    ['invalid wire type 7', Buffer.from([0x0f, 0x01])],
    ['unterminated varint', Buffer.from([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])],
    ['nested message cut short', Buffer.from([0x1a, 0x05, 0x08])],
    ['empty message (no algorithm)', Buffer.alloc(0)],
  ];
  it.each(garbage)('%s -> INVALID_ARGUMENT on PlanSearch, Submit, Search and Get', async (name, bytes) => {
    await check('malformed', `PlanSearch: ${name}`, rawUnary(M('PlanSearch'), bytes), S.INVALID_ARGUMENT);
    await check('malformed', `Submit: ${name}`, rawUnary(M('Submit'), bytes), S.INVALID_ARGUMENT);
    await check('malformed', `Search: ${name}`, rawStream(M('Search'), bytes), S.INVALID_ARGUMENT);
    if (bytes.length > 0) await check('malformed', `Get: ${name}`, rawUnary(M('Get'), bytes), [S.INVALID_ARGUMENT, S.NOT_FOUND]);
  });

  it('a negative budget on the wire (uint64 from a negative int64) -> INVALID_ARGUMENT naming budget_nfes', async () => {
    const bytes = Buffer.concat([enc({}), negativeVarint(9)]);
    const err: any = await rawUnary(M('PlanSearch'), bytes).catch((e) => e);
    await check('negative', 'budget_nfes = -1 as a varint', Promise.reject(err), S.INVALID_ARGUMENT);
    expect(err.details).toContain('budget_nfes');
  });

  it('an unknown method -> UNIMPLEMENTED', async () => {
    await check('unknown names', 'method Search/Nope', rawUnary(M('Nope'), Buffer.alloc(0)), S.UNIMPLEMENTED);
  });
});

describe('NaN, negative and out-of-range values', () => {
  const cases: [string, Partial<SearchRequest>, grpc.status][] = [
    ['zero_order.tau = NaN', { random: undefined, zeroOrder: { n: 2, k: 2, tau: NaN, acceptNonImproving: false } }, S.INVALID_ARGUMENT],
    ['zero_order.tau = -5', { random: undefined, zeroOrder: { n: 2, k: 2, tau: -5, acceptNonImproving: false } }, S.INVALID_ARGUMENT],
    ['zero_order.tau = +Infinity', { random: undefined, zeroOrder: { n: 2, k: 2, tau: Infinity, acceptNonImproving: false } }, S.INVALID_ARGUMENT],
    ['paths.sigma_start = NaN', { random: undefined, paths: { n: 2, m: 2, sigmaStart: NaN, backwardSteps: 0 } }, S.INVALID_ARGUMENT],
    ['paths.delta_forward = -0.1', { random: undefined, paths: { n: 2, m: 2, deltaForward: -0.1, backwardSteps: 0 } }, S.INVALID_ARGUMENT],
    ['paths.delta_backward = NaN', { random: undefined, paths: { n: 2, m: 2, deltaBackward: NaN, backwardSteps: 0 } }, S.INVALID_ARGUMENT],
    ['search_solver.guidance_scale = NaN', { searchSolver: { solver: 2, steps: 2, guidanceScale: NaN } }, S.INVALID_ARGUMENT],
    ['search_solver.guidance_scale = -1', { searchSolver: { solver: 2, steps: 2, guidanceScale: -1 } }, S.INVALID_ARGUMENT],
    ['final_solver.guidance_scale = Infinity', { finalSolver: { solver: 2, steps: 2, guidanceScale: Infinity } }, S.INVALID_ARGUMENT],
    ['verifier weight = NaN', { verifiers: [{ name: 'classifier-logit', weight: NaN }] }, S.INVALID_ARGUMENT],
    ['verifier weight = -1', { verifiers: [{ name: 'classifier-logit', weight: -1 }] }, S.INVALID_ARGUMENT],
    ['condition.class_label = -1', { condition: { classLabel: -1 } }, S.INVALID_ARGUMENT],
    ['random.n = 0', { random: { n: 0 } }, S.INVALID_ARGUMENT],
    ['two algorithms at once', { zeroOrder: { n: 2, k: 2, acceptNonImproving: false } }, S.INVALID_ARGUMENT],
    ['return.png_upscale = 4294967295', { return: { png: true, rawTensor: false, candidateScores: false, pngUpscale: 4294967295 } }, S.INVALID_ARGUMENT],
  ];
  it.each(cases)('%s', async (name, partial, code) => {
    const admin = client(ADMIN);
    await check('NaN/negative', `PlanSearch: ${name}`, admin.plan(small(1, partial)), code);
    await check('NaN/negative', `Search: ${name}`, admin.search(small(1, partial)), code);
  });
});

describe('huge N, budgets, steps and outputs', () => {
  const cases: [string, Partial<SearchRequest>, grpc.status][] = [
    ['random.n = 4294967295', { random: { n: 4294967295 } }, S.RESOURCE_EXHAUSTED],
    ['zero_order n = k = 65536', { random: undefined, zeroOrder: { n: 65536, k: 65536, acceptNonImproving: false } }, S.RESOURCE_EXHAUSTED],
    ['paths n = m = 1e6', { random: undefined, paths: { n: 1_000_000, m: 1_000_000, backwardSteps: 0 } }, S.RESOURCE_EXHAUSTED],
    ['budget_nfes = 2^64 - 1', { budgetNfes: '18446744073709551615' }, S.INVALID_ARGUMENT],
    ['budget_nfes = 1e15', { budgetNfes: '1000000000000000' }, S.INVALID_ARGUMENT],
    ['plan over budget (n = 100, budget 3)', { random: { n: 100 }, budgetNfes: '3' }, S.RESOURCE_EXHAUSTED],
    ['search_solver.steps = 4294967295', { searchSolver: { solver: 2, steps: 4294967295, guidanceScale: 1 } }, S.INVALID_ARGUMENT],
    ['paths.backward_steps = 1e9', { random: undefined, paths: { n: 2, m: 2, backwardSteps: 1_000_000_000 } }, S.INVALID_ARGUMENT],
    ['num_outputs = 1e6', { numOutputs: 1_000_000 }, S.INVALID_ARGUMENT],
  ];
  it.each(cases)('%s', async (name, partial, code) => {
    const admin = client(ADMIN);
    await check('huge', `PlanSearch: ${name}`, admin.plan(small(1, partial)), code);
    await check('huge', `Submit: ${name}`, admin.submit(small(1, partial)), code);
  });
});

describe('unknown names', () => {
  it('model, verifier, ensemble, solver -> INVALID_ARGUMENT; job ids -> NOT_FOUND', async () => {
    const admin = client(ADMIN);
    await check('unknown names', 'model no-such-model', admin.plan(small(1, { model: 'no-such-model' })), S.INVALID_ARGUMENT);
    await check('unknown names', 'verifier no-such-verifier', admin.plan(small(1, { verifiers: [{ name: 'no-such-verifier', weight: 1 }] })), S.INVALID_ARGUMENT);
    await check('unknown names', 'ensemble 99', admin.plan(small(1, { ensemble: 99 as never })), S.INVALID_ARGUMENT);
    await check('unknown names', 'solver 99', admin.plan(small(1, { searchSolver: { solver: 99 as never, steps: 2, guidanceScale: 1 } })), S.INVALID_ARGUMENT);
    await check('unknown names', 'Get job-nope', admin.get('job-nope'), S.NOT_FOUND);
    await check('unknown names', 'Watch job-nope', admin.watch('job-nope'), S.NOT_FOUND);
    await check('unknown names', 'Cancel job-nope', admin.cancel('job-nope'), S.NOT_FOUND);
    await check('unknown names', 'Get ../../etc/passwd', admin.get('../../etc/passwd'), S.NOT_FOUND);
  });
});

describe('oversized payloads', () => {
  it('a request over the 4 MiB message limit -> RESOURCE_EXHAUSTED', async () => {
    const admin = client(ADMIN);
    const huge = small(1, { clientId: 'x'.repeat(5 * MiB) });
    await check('oversized', 'PlanSearch with a 5 MiB client_id', admin.plan(huge), S.RESOURCE_EXHAUSTED);
    await check('oversized', 'Search with a 5 MiB client_id', admin.search(huge), S.RESOURCE_EXHAUSTED);
    await check('oversized', 'Submit with a 5 MiB prompt', admin.submit(small(1, { condition: { prompt: 'p'.repeat(5 * MiB) } })), S.RESOURCE_EXHAUSTED);
  });

  it('a just-under-the-limit request is parsed and judged on its content (INVALID_ARGUMENT: no prompts here)', async () => {
    await check('oversized', 'PlanSearch with a 3 MiB prompt', client(ADMIN).plan(small(1, { condition: { prompt: 'p'.repeat(3 * MiB) } })), S.INVALID_ARGUMENT);
  });
});

describe('wrong and missing tokens', () => {
  const methods: [string, (c: ReturnType<typeof api>) => Promise<unknown>, 'admin' | 'read'][] = [
    ['Search', (c) => c.search(small(2)), 'admin'],
    ['Submit', (c) => c.submit(small(2)), 'admin'],
    ['Cancel', (c) => c.cancel('job-nope'), 'admin'],
    ['PlanSearch', (c) => c.plan(small(2)), 'read'],
    ['Get', (c) => c.get('job-nope'), 'read'],
    ['Watch', (c) => c.watch('job-nope'), 'read'],
    ['List', (c) => c.list(), 'read'],
  ];
  it.each(methods)('gRPC %s: missing / wrong token -> UNAUTHENTICATED; read-only token on a mutating call -> PERMISSION_DENIED', async (name, call, access) => {
    await check('tokens', `${name} without a token`, call(client(undefined)), S.UNAUTHENTICATED);
    await check('tokens', `${name} with a wrong token`, call(client(WRONG)), S.UNAUTHENTICATED);
    await check('tokens', `${name} with an empty bearer`, call(client(' ')), S.UNAUTHENTICATED);
    const expected = access === 'admin' ? S.PERMISSION_DENIED : name === 'Get' || name === 'Watch' ? S.NOT_FOUND : S.OK;
    await check('tokens', `${name} with the read-only token`, call(client(READ)), expected);
  });

  it('a raw gRPC call with the token in the wrong scheme -> UNAUTHENTICATED', async () => {
    const c = new grpc.Client(orch.grpcAddress, grpc.credentials.createInsecure());
    const md = new grpc.Metadata();
    md.set('authorization', `Basic ${ADMIN}`);
    const p = new Promise((resolve, reject) => c.makeUnaryRequest(M('List'), (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0), md, (e, r) => (e ? reject(e) : resolve(r))));
    await check('tokens', 'List with `Basic <token>`', p, S.UNAUTHENTICATED);
    c.close();
  });

  it('grpc.health.v1 stays open', async () => {
    const protoLoader = await import('@grpc/proto-loader');
    const { protoPath } = await import('grpc-health-check');
    const def = protoLoader.loadSync(protoPath, { keepCase: true, enums: String, defaults: true });
    const Health = (grpc.loadPackageDefinition(def) as any).grpc.health.v1.Health;
    const h = new Health(orch.grpcAddress, grpc.credentials.createInsecure());
    const res = await new Promise<any>((resolve, reject) => h.Check({ service: '' }, (e: Error | null, r: unknown) => (e ? reject(e) : resolve(r))));
    h.close();
    expect(res.status).toBe('SERVING');
  });

  it('HTTP: 401 without or with a wrong token, 403 for read-only on cancel, /health open, the dashboard cookie', async () => {
    const u = orch.httpUrl;
    const routes = ['/admin/jobs', '/admin/jobs/job-nope', '/admin/workers', '/admin/usage', '/metrics', '/docs-json', '/docs', '/admin/jobs/job-nope/events'];
    const note = (input: string, status: number, expected: number) => {
      tried.push({ group: 'tokens (HTTP)', input, expected: String(expected), got: String(status) });
      expect({ input, status }).toEqual({ input, status: expected });
    };
    for (const r of routes) {
      note(`GET ${r} without a token`, (await http(u + r)).status, 401);
      note(`GET ${r} with a wrong token`, (await http(u + r, { token: WRONG })).status, 401);
    }
    note('POST cancel without a token', (await http(`${u}/admin/jobs/job-nope/cancel`, { method: 'POST' })).status, 401);
    note('POST cancel with the read-only token', (await http(`${u}/admin/jobs/job-nope/cancel`, { method: 'POST', token: READ })).status, 403);
    note('POST cancel (admin) of an unknown job', (await http(`${u}/admin/jobs/job-nope/cancel`, { method: 'POST', token: ADMIN })).status, 404);
    note('GET /admin/jobs?state=bogus', (await http(`${u}/admin/jobs?state=bogus`, { token: READ })).status, 400);
    // A limit out of [1, 1000] is refused with a message naming it and the range, not clamped (issue 12).
    for (const limit of ['0', '1001', '-1']) {
      const res = await http(`${u}/admin/jobs?limit=${limit}`, { token: READ });
      note(`GET /admin/jobs?limit=${limit}`, res.status, 400);
      expect(res.body.message).toMatch(/^limit\b.*\[1, 1000\]/);
    }
    note('GET /admin/jobs?limit=1000', (await http(`${u}/admin/jobs?limit=1000`, { token: READ })).status, 200);
    note('GET /admin/jobs/job-nope/outputs/0.png', (await http(`${u}/admin/jobs/job-nope/outputs/0.png`, { token: READ })).status, 404);
    note('GET /admin/jobs/job-nope/outputs/..%2F..%2Fpackage.json', (await http(`${u}/admin/jobs/job-nope/outputs/..%2F..%2Fpackage.json`, { token: READ })).status, 400);
    note('GET /dashboard/static/..%2F..%2F..%2Fpackage.json', (await http(`${u}/dashboard/static/..%2F..%2F..%2Fpackage.json`)).status, 404);
    const health = await http(`${u}/health`);
    note('GET /health without a token', health.status, 200);
    // Liveness stays open; the workers' addresses and PIDs only with a read token.
    expect(health.body).toMatchObject({ status: 'ok', workersTotal: 1, workersServing: 1 });
    expect(JSON.stringify(health.body)).not.toContain(workerAddress);
    expect(health.body.workers).toBeUndefined();
    const detailed = await http(`${u}/health`, { token: READ });
    expect(detailed.body.workers[0]).toMatchObject({ address: workerAddress, serving: true });
    note('GET /metrics with the read-only token', (await http(`${u}/metrics`, { token: READ })).status, 200);
    note('GET /docs-json with the read-only token', (await http(`${u}/docs-json`, { token: READ })).status, 200);
    // The dashboard: a wrong token sets no cookie; a read token becomes an HttpOnly cookie that opens the API.
    const denied = await http(`${u}/dashboard?token=${WRONG}`);
    note('GET /dashboard?token=<wrong>', denied.status, 303);
    expect(denied.headers.get('set-cookie')).toBeNull();
    const ok = await http(`${u}/dashboard?token=${READ}`);
    expect(ok.status).toBe(303);
    const cookie = ok.headers.get('set-cookie')!;
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/SameSite=Strict/);
    note('GET /admin/jobs with the dashboard cookie', (await http(`${u}/admin/jobs`, { cookie: cookie.split(';')[0] })).status, 200);
    note('POST cancel with the read-only cookie', (await http(`${u}/admin/jobs/job-nope/cancel`, { method: 'POST', cookie: cookie.split(';')[0] })).status, 403);
  });
});

describe('slow and vanishing clients', () => {
  const long = () => small(7, { random: { n: 64 }, searchSolver: euler(20) });

  async function waitState(id: string, states: JobState[], ms = 30_000): Promise<JobState> {
    const admin = client(ADMIN);
    const t0 = Date.now();
    let s = (await admin.get(id)).state;
    while (!states.includes(s) && Date.now() - t0 < ms) {
      await sleep(50);
      s = (await admin.get(id)).state;
    }
    return s;
  }

  it('a client that cancels its Search stream mid-job: the job is CANCELLED and the worker idle', async () => {
    const c = searchClient(orch.grpcAddress, { token: ADMIN });
    clients.push(c);
    const call = c.search(long());
    const id = await new Promise<string>((resolve, reject) => { call.once('data', (e: SearchEvent) => resolve(e.jobId)); call.once('error', reject); });
    call.on('error', () => undefined);
    const ws = orch.app.get(WorkerService);
    const t0 = Date.now();
    while (ws.workers[0].rpc.inFlight === 0 && Date.now() - t0 < 20_000) await sleep(10);
    call.cancel();
    const state = await waitState(id, [JobState.JOB_STATE_CANCELLED]);
    tried.push({ group: 'vanishing clients', input: 'Search stream cancelled mid-job', expected: 'job CANCELLED', got: `job ${JobState[state]}` });
    expect(state).toBe(JobState.JOB_STATE_CANCELLED);
    expect(ws.workers[0].rpc.inFlight).toBe(0);
  });

  it('a client whose deadline expires mid-stream: DEADLINE_EXCEEDED, and the job is CANCELLED', async () => {
    const c = searchClient(orch.grpcAddress, { token: ADMIN });
    clients.push(c);
    const events: SearchEvent[] = [];
    const call = c.search(long(), { deadline: Date.now() + 1_500 });
    const err = await collect(call, (e) => events.push(e)).then(() => undefined, (e) => e);
    await check('vanishing clients', 'Search with a 1.5 s deadline', Promise.reject(err), S.DEADLINE_EXCEEDED);
    expect(events.length).toBeGreaterThan(0);
    const state = await waitState(events[0].jobId, [JobState.JOB_STATE_CANCELLED]);
    tried.push({ group: 'vanishing clients', input: 'its job after the deadline', expected: 'job CANCELLED', got: `job ${JobState[state]}` });
    expect(state).toBe(JobState.JOB_STATE_CANCELLED);
  });

  it('a Watch that vanishes does not cancel the job: it finishes and accounts its plan', async () => {
    const admin = client(ADMIN);
    const job = await admin.submit(small(11, { random: { n: 4 }, searchSolver: euler(4) }));
    const c = searchClient(orch.grpcAddress, { token: READ });
    clients.push(c);
    const w = c.watch({ id: job.id });
    w.on('error', () => undefined);
    await new Promise((r) => w.once('data', r));
    w.cancel();
    const state = await waitState(job.id, [JobState.JOB_STATE_SUCCEEDED, JobState.JOB_STATE_FAILED, JobState.JOB_STATE_CANCELLED], 60_000);
    tried.push({ group: 'vanishing clients', input: 'Watch cancelled mid-job', expected: 'job SUCCEEDED', got: `job ${JobState[state]}` });
    expect(state).toBe(JobState.JOB_STATE_SUCCEEDED);
    const done = await admin.get(job.id);
    expect(done.result!.accounting!.searchNfes).toBe(done.plan!.searchNfes);
  });

  it('a slow reader (stream paused 2 s) still gets every event, in order', async () => {
    const c = searchClient(orch.grpcAddress, { token: ADMIN });
    clients.push(c);
    const call = c.search(small(12, { random: undefined, zeroOrder: { n: 2, k: 3, acceptNonImproving: true } }));
    const got: SearchEvent[] = [];
    const done = new Promise<void>((resolve, reject) => {
      call.on('data', (e: SearchEvent) => {
        got.push(e);
        if (got.length === 1) { call.pause(); setTimeout(() => call.resume(), 2_000); }
      });
      call.on('error', reject);
      call.on('end', () => resolve());
    });
    await done;
    const kinds = got.map(kindOf);
    tried.push({ group: 'slow clients', input: 'Search read with a 2 s pause', expected: 'plan, rounds, result', got: `${kinds.length} events ending in ${kinds[kinds.length - 1]}` });
    expect(kinds[0]).toBe('plan');
    expect(kinds[kinds.length - 1]).toBe('result');
    expect(kinds.filter((k) => k === 'round').length).toBe(got[0].plan!.rounds);
  });
});

describe('issue 12: the outside probe', () => {
  /** The refusal's status and details, which must name `field` and stay short. */
  async function refused(group: string, input: string, p: Promise<unknown>, field: string, code = S.INVALID_ARGUMENT): Promise<void> {
    const err: any = await p.then(() => undefined, (e) => e);
    await check(group, input, err ? Promise.reject(err) : Promise.resolve(), code);
    expect({ input, startsWithField: String(err?.details).startsWith(field) }).toEqual({ input, startsWithField: true });
    expect(String(err?.details).length).toBeLessThan(1100);
    expect(String(err?.details)).not.toContain(workerAddress);
  }
  const paths = (p: Record<string, number>) => ({ random: undefined, paths: { n: 1, m: 1, backwardSteps: 0, ...p } });

  it('oversized strings and lists are refused naming the field, before anything is stored', async () => {
    const admin = client(ADMIN);
    const before = (await admin.list(JobState.JOB_STATE_UNSPECIFIED, 1000)).jobs.length;
    await refused('issue 12', 'PlanSearch with a 1 MiB client_id', admin.plan(small(1, { clientId: 'c'.repeat(MiB) })), 'client_id');
    await refused('issue 12', 'Submit with a 1 MiB client_id', admin.submit(small(1, { clientId: 'c'.repeat(MiB) })), 'client_id');
    await refused('issue 12', 'Search with a 1 MiB client_id', admin.search(small(1, { clientId: 'c'.repeat(MiB) })), 'client_id');
    await refused('issue 12', 'PlanSearch with a 200 kB model name', admin.plan(small(1, { model: 'm'.repeat(200_000) })), 'model');
    await refused('issue 12', 'PlanSearch with a 2 MiB verifier name', admin.plan(small(1, { verifiers: [{ name: 'v'.repeat(2 * MiB), weight: 1 }] })), 'verifiers[0].name');
    await refused('issue 12', 'PlanSearch with 1000 verifiers', admin.plan(small(1, { verifiers: Array.from({ length: 1000 }, () => ({ name: 'classifier-logit', weight: 1 })) })), 'verifiers');
    await refused('issue 12', 'PlanSearch with a 5000-byte prompt', admin.plan(small(1, { condition: { prompt: 'p'.repeat(5000) } })), 'condition.prompt');
    await refused('issue 12', 'Get with a 1 MiB id', admin.get('j'.repeat(MiB)), 'id');
    await refused('issue 12', 'Watch with a 1 MiB id', admin.watch('j'.repeat(MiB)), 'id');
    await refused('issue 12', 'Cancel with a 1 MiB id', admin.cancel('j'.repeat(MiB)), 'id');
    expect((await admin.list(JobState.JOB_STATE_UNSPECIFIED, 1000)).jobs.length).toBe(before);
  });

  it('List: an unknown state and a limit over the cap are refused, not answered or capped', async () => {
    const admin = client(ADMIN);
    await refused('issue 12', 'List state 99', admin.list(99 as JobState, 5), 'state');
    await refused('issue 12', 'List limit 2^32 - 1', admin.list(JobState.JOB_STATE_UNSPECIFIED, 4294967295), 'limit');
    await check('issue 12', 'List limit 1000', admin.list(JobState.JOB_STATE_UNSPECIFIED, 1000), S.OK);
  });

  it('requests that used to spend NFEs and then fail are refused up front; what cannot search is refused', async () => {
    const admin = client(ADMIN);
    const spent = () => orch.app.get(WorkerService).workers[0].rpc.calls;
    const calls = spent();
    await refused('issue 12', 'Search paths {n:1, m:1, sigma_start:1e-12}', admin.search(small(1, paths({ sigmaStart: 1e-12 }))), 'paths.sigma_start');
    await refused('issue 12', 'Search paths {sigma_start:0.1, delta_forward:1e-12, delta_backward:0.1}',
      admin.search(small(1, paths({ sigmaStart: 0.1, deltaForward: 1e-12, deltaBackward: 0.1 }))), 'paths.delta_forward');
    await refused('issue 12', 'Search paths sigma_start 1.0', admin.search(small(1, paths({ sigmaStart: 1 }))), 'paths.sigma_start');
    await refused('issue 12', 'Search guidance_scale 1e308', admin.search(small(1, { searchSolver: { solver: 2, steps: 2, guidanceScale: 1e308 } })), 'search_solver.guidance_scale');
    await refused('issue 12', 'Search zero_order {n:3, k:2, tau:1}', admin.search(small(1, { random: undefined, zeroOrder: { n: 3, k: 2, tau: 1, acceptNonImproving: false }, numOutputs: 3 })), 'zero_order.tau');
    await refused('issue 12', 'Search ZSCORE weight 1e308', admin.search(small(1, { ensemble: 2, verifiers: [{ name: 'classifier-logit', weight: 1e308 }, { name: 'feature-cosine', weight: 1 }] })), 'verifiers[0].weight');
    await refused('issue 12', 'Search without a condition (default = the supervised verifier)', admin.search(small(1, { condition: undefined })), 'condition');
    expect(spent()).toBe(calls); // not one worker call
    // steps 0 = the model's default, and the plan says which.
    const plan = await admin.plan(small(1, { searchSolver: { solver: 0, steps: 0, guidanceScale: 1 } }));
    expect(plan.request!.searchSolver!.steps).toBeGreaterThan(0);
  });
});

describe('nothing lost', () => {
  it('no job is left queued or running, the worker holds no tensors, and a search still succeeds exactly', async () => {
    const admin = client(ADMIN);
    const t0 = Date.now();
    let open = (await admin.list(JobState.JOB_STATE_RUNNING, 1000)).jobs.length + (await admin.list(JobState.JOB_STATE_QUEUED, 1000)).jobs.length;
    while (open > 0 && Date.now() - t0 < 30_000) {
      await sleep(100);
      open = (await admin.list(JobState.JOB_STATE_RUNNING, 1000)).jobs.length + (await admin.list(JobState.JOB_STATE_QUEUED, 1000)).jobs.length;
    }
    expect(open).toBe(0);
    expect(orch.app.get(WorkerService).workers[0].rpc.inFlight).toBe(0);
    expect((await wr.call('describe', {})).memoryUsedBytes).toBe('0');
    const events = await admin.search(small(99));
    const result = events[events.length - 1].result!;
    expect(result.accounting!.searchNfes).toBe(events[0].plan!.searchNfes);
    expect(result.outputs[0].png.length).toBeGreaterThan(0);
    const all = (await admin.list(JobState.JOB_STATE_UNSPECIFIED, 1000)).jobs;
    publish('bad-input-jobs', {
      jobs: all.length,
      byState: all.reduce<Record<string, number>>((m, j) => ({ ...m, [JobState[j.state]]: (m[JobState[j.state]] ?? 0) + 1 }), {}),
    });
  });
});

describe('TLS, the generated token and NOISESEARCH_AUTH=off (second orchestrators on the same worker)', () => {
  it('TLS: a client trusting the CA searches; a plaintext client cannot connect', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ns-tls-'));
    const cert = path.join(dir, 'cert.pem');
    const key = path.join(dir, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1',
      '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' });
    const tls = await startOrchestrator(loadConfig({ NOISESEARCH_WORKER_ADDRESSES: workerAddress, NOISESEARCH_TLS_CERT: cert, NOISESEARCH_TLS_KEY: key, NOISESEARCH_TOKENS: `${ADMIN}:admin` },
      { grpcAddress: '127.0.0.1:0', httpPort: 0, ...MEMORY }), { logger: ['error'] });
    try {
      const secure = searchClient(tls.grpcAddress, { token: ADMIN, tls: fs.readFileSync(cert) });
      const plain = searchClient(tls.grpcAddress, { token: ADMIN });
      clients.push(secure, plain);
      const events = await api(secure).search(small(5));
      expect(kindOf(events[events.length - 1])).toBe('result');
      await check('TLS', 'plaintext client to the TLS port', api(plain).plan(small(5)), S.UNAVAILABLE);
      const noToken = searchClient(tls.grpcAddress, { token: '', tls: fs.readFileSync(cert) });
      clients.push(noToken);
      await check('TLS', 'TLS client without a token', api(noToken).plan(small(5)), S.UNAUTHENTICATED);
    } finally {
      await tls.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('no tokens configured: a random admin token for the process; clients of this process use it, others are refused', async () => {
    const gen = await startOrchestrator(loadConfig({ NOISESEARCH_WORKER_ADDRESSES: workerAddress }, { grpcAddress: '127.0.0.1:0', httpPort: 0, ...MEMORY }), { logger: ['error'] });
    try {
      expect(gen.token).toMatch(/^[A-Za-z0-9_-]{32}$/);
      const own = searchClient(gen.grpcAddress);
      const stranger = searchClient(gen.grpcAddress, { token: '' });
      clients.push(own, stranger);
      expect((await api(own).plan(small(5))).searchNfes).toBe('4');
      await check('tokens', 'no token, orchestrator with a generated token', api(stranger).plan(small(5)), S.UNAUTHENTICATED);
    } finally {
      await gen.close();
    }
  });

  it('NOISESEARCH_AUTH=off: nothing is checked', async () => {
    const off = await startOrchestrator(loadConfig({ NOISESEARCH_WORKER_ADDRESSES: workerAddress, NOISESEARCH_AUTH: 'off' }, { grpcAddress: '127.0.0.1:0', httpPort: 0, ...MEMORY }), { logger: ['error'] });
    try {
      expect(off.token).toBeUndefined();
      const anyone = searchClient(off.grpcAddress, { token: '' });
      clients.push(anyone);
      expect((await api(anyone).plan(small(5))).searchNfes).toBe('4');
    } finally {
      await off.close();
    }
  });
});

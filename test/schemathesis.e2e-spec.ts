// schemathesis (PyPI, python-worker's `dev` extra) against the admin endpoint's OpenAPI document
// (/docs-json), on a real orchestrator and worker: generated requests for every route, checked for
// server errors and conformance to the document. Bounded: NOISESEARCH_SCHEMATHESIS_EXAMPLES per
// operation (default 25). Prints the number of requests it made (out/ops/schemathesis.json).
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Orchestrator } from '../src/main';
import { ADMIN, http, publish, small, startWithTokens } from './ops-util';
import { api, searchClient } from '../src/cli/client';

jest.setTimeout(600_000);

const BIN = path.join(__dirname, '..', 'python-worker', '.venv', 'bin', 'schemathesis');
const EXAMPLES = Number(process.env.NOISESEARCH_SCHEMATHESIS_EXAMPLES || 25);

let orch: Orchestrator & { httpUrl: string };

beforeAll(async () => {
  orch = await startWithTokens({});
  // A finished job, so that routes taking a job id also meet one that exists.
  const c = searchClient(orch.grpcAddress, { token: ADMIN });
  await api(c).search(small(3));
  c.close();
}, 180_000);

afterAll(async () => {
  await orch?.close();
});

const run = (args: string[], cwd: string) => new Promise<{ code: number | null; out: string }>((resolve) => {
  // In a scratch folder: schemathesis keeps its state (.schemathesis/) in the working directory.
  const child = spawn(BIN, args, { cwd, env: { ...process.env, NO_COLOR: '1', SCHEMATHESIS_HOOKS: '' } });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { out += d; });
  child.on('exit', (code) => resolve({ code, out }));
});

// Installed by ./scripts/setup.sh (python-worker[dev]); a checkout set up before it was added lacks it.
const maybe: (name: string, fn: () => Promise<void>, timeout?: number) => void = fs.existsSync(BIN)
  ? it
  : (name, fn, timeout) => it.skip(`${name} (skipped: ${BIN} is missing; ./scripts/setup.sh installs it)`, fn, timeout);

maybe('the admin API conforms to its OpenAPI document and never answers 5xx', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'schemathesis-'));
  const report = path.join(dir, 'run.ndjson'); // kept for `st replay` after a failure
  const t0 = Date.now();
  const { code, out } = await run([
    'run', `${orch.httpUrl}/docs-json`,
    '-H', `Authorization: Bearer ${ADMIN}`,
    '--max-examples', String(EXAMPLES),
    '--checks', 'not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance',
    '--seed', '12',
    '--request-timeout', '30',
    '--report', 'ndjson', '--report-ndjson-path', report,
  ], dir);
  const seconds = (Date.now() - t0) / 1000;
  const requests = Number(/(\d+) generated/.exec(out)?.[1] ?? 0);
  const summary = out.split('\n').filter((l) => /passed|failed|errored|Test cases|operations|requests/i.test(l)).slice(-8);
  publish('schemathesis', { exitCode: code, seconds, testCases: requests, summary });
  process.stdout.write(`schemathesis: exit ${code} in ${seconds.toFixed(1)} s, ${requests} test cases\n${out.split('\n').slice(-40).join('\n')}\n`);
  expect({ code, tail: code === 0 ? '' : out.slice(-4000) }).toEqual({ code: 0, tail: '' });
});

it('regression (found by schemathesis, seed 12): a repeated query parameter is a 400, not a 500', async () => {
  const res = await http(`${orch.httpUrl}/admin/jobs?state=null&state=null`, { token: ADMIN });
  expect(res.status).toBe(400);
  expect(res.body.message).toMatch(/^state: give it once/);
  expect((await http(`${orch.httpUrl}/admin/usage?client=a&client=b`, { token: ADMIN })).status).toBe(400);
});

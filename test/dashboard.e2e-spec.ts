// The dashboard in a real browser: Debian's chromium driven by playwright-core (headless, a fresh
// profile, no network but loopback). With a read-only token, the page follows a running job live
// through server-sent events: the plan appears, rounds arrive while the job runs, the chart draws,
// candidate thumbnails and the result image load, and the workers' state is shown.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { api, searchClient } from '../src/cli/client';
import type { Orchestrator } from '../src/main';
import { WorkerService } from '../src/worker/worker.service';
import { ADMIN, READ, euler, http, publish, small, startWithTokens } from './ops-util';

jest.setTimeout(240_000);

const CHROMIUM = process.env.NOISESEARCH_CHROMIUM ?? '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run'];

let orch: Orchestrator & { httpUrl: string };
let context: BrowserContext;
let profile: string;
/** A SQLite file (not :memory:): the last test restarts the orchestrator on it. */
let dataDir: string;

beforeAll(async () => {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: scripts/setup.sh installs Debian's chromium`);
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ns-dashboard-db-'));
  orch = await startWithTokens({ maxRunningJobs: 2, db: path.join(dataDir, 'jobs.db') });
  profile = fs.mkdtempSync(path.join(os.tmpdir(), 'ns-chromium-'));
  context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS });
}, 180_000);

afterAll(async () => {
  await context?.close();
  await orch?.close();
  if (profile) fs.rmSync(profile, { recursive: true, force: true });
  if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
});

/** Every thumbnail of the rounds list, fetched: url -> status and bytes. */
let thumbs: { url: string; status: number; bytes: string }[] = [];

it('shows a running job live: plan, rounds, chart, thumbnails, result image, workers', async () => {
  const page = context.pages()[0] ?? await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const outside: string[] = [];
  page.on('request', (r) => { if (!r.url().startsWith(orch.httpUrl)) outside.push(r.url()); });

  // Without a token: the page asks for one.
  await page.goto(`${orch.httpUrl}/dashboard`);
  await page.waitForSelector('#login:not([hidden])');

  // The read-only token becomes a cookie; the address bar loses it.
  await page.goto(`${orch.httpUrl}/dashboard?token=${READ}`);
  expect(page.url()).toBe(`${orch.httpUrl}/dashboard`);
  await page.waitForSelector('#app:not([hidden])');
  // Predicates run in the page (functions: the page's CSP forbids evaluating strings).
  await page.waitForFunction(() => (globalThis as any).document.querySelectorAll('#workers tbody tr').length === 1);
  expect(await page.textContent('#workers tbody')).toContain('serving');

  // A job slow enough to watch (ZO-4, 8 iterations, Euler 25 steps), submitted with the admin token.
  const client = searchClient(orch.grpcAddress, { token: ADMIN });
  const job = await api(client).submit(small(7, {
    random: undefined, zeroOrder: { n: 4, k: 8, acceptNonImproving: true }, searchSolver: euler(25), clientId: 'dashboard',
  }));
  await page.goto(`${orch.httpUrl}/dashboard#job=${job.id}`);
  await page.waitForSelector('#job:not([hidden])');
  await page.waitForFunction(() => ((globalThis as any).document.querySelector('#plan')?.textContent ?? '').includes('zero_order'));
  const planText = await page.textContent('#plan');
  expect(planText).toContain('800'); // 8 x 4 x 25 search NFEs

  // Live: rounds keep arriving while the badge says running.
  const firstRounds = await page.locator('#rounds li').count();
  const stateAtFirst = await page.textContent('#job-state');
  await page.waitForFunction((n) => (globalThis as any).document.querySelectorAll('#rounds li').length > n, firstRounds, { timeout: 120_000 });
  const seenRunning = stateAtFirst === 'running' || firstRounds < 8;
  expect(seenRunning).toBe(true);

  // The end: 8 rounds, the chart's line with one point per round, thumbnails and the result image loaded.
  await page.waitForFunction(() => ((globalThis as any).document.querySelector('#job-state')?.textContent ?? '') === 'succeeded', undefined, { timeout: 180_000 });
  // The job table and the result panel follow the end of the job without a reload (the stream's end
  // refreshes them at once, not at the next 2-second poll).
  await page.waitForFunction((id) => ((globalThis as any).document.querySelector(`#jobs tbody tr[data-job="${id}"] .badge`)?.textContent ?? '') === 'succeeded',
    job.id, { timeout: 1_500 });
  expect(await page.textContent('#result')).not.toContain('not yet');
  const loaded = (sel: string) => page.waitForFunction(
    (s) => [...(globalThis as any).document.querySelectorAll(s)].some((i: any) => i.complete && i.naturalWidth > 0), sel, { timeout: 60_000 });
  await loaded('#result img');
  expect(await page.locator('#rounds li').count()).toBe(8);
  expect(await page.locator('#chart circle').count()).toBe(8);
  const polyline = await page.getAttribute('#chart polyline', 'points');
  expect(polyline!.split(' ').length).toBe(8);
  await loaded('#rounds li .thumbs img');
  // Thumbnails were decoded while the round ran and are served from the job store: no worker call.
  const rpc = orch.app.get(WorkerService).workers[0].rpc;
  const callsBefore = rpc.calls;
  const src = await page.getAttribute('#rounds li .thumbs img', 'src');
  const thumb = await page.evaluate(async (u) => { const r = await fetch(u!); return { status: r.status, type: r.headers.get('content-type'), bytes: (await r.arrayBuffer()).byteLength }; }, src);
  expect(thumb).toMatchObject({ status: 200, type: 'image/png' });
  expect(thumb.bytes).toBeGreaterThan(50);
  expect(rpc.calls).toBe(callsBefore);
  // Every thumbnail the rounds list shows is there, also those of rounds whose accepted pivot is not
  // among the pool's best (accept_non_improving); fetched, not awaited as images (they load lazily).
  const srcs = await page.$$eval('#rounds li .thumbs img', (imgs) => imgs.map((i) => (i as any).getAttribute('src') as string));
  expect(srcs.length).toBeGreaterThanOrEqual(8);
  thumbs = await page.evaluate(async (urls) => Promise.all(urls.map(async (url) => {
    const r = await fetch(url);
    const b = new Uint8Array(await r.arrayBuffer());
    return { url, status: r.status, bytes: Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('') };
  })), srcs);
  expect(thumbs.filter((t) => t.status !== 200).map((t) => `${t.url}: ${t.status}`)).toEqual([]);
  expect(await page.textContent('#result')).toContain('search 800');
  expect(await page.locator(`#jobs tbody tr[data-job="${job.id}"]`).count()).toBe(1);

  // A read-only session cannot cancel (the button's POST gets 403).
  const status = await page.evaluate(async (id) => (await fetch(`/admin/jobs/${id}/cancel`, { method: 'POST' })).status, job.id);
  expect(status).toBe(403);

  fs.mkdirSync(path.join(__dirname, '..', 'out', 'ops'), { recursive: true });
  await page.screenshot({ path: path.join(__dirname, '..', 'out', 'ops', 'dashboard.png'), fullPage: true });
  client.close();
  expect(errors).toEqual([]);
  expect(outside).toEqual([]);
  publish('dashboard', { job: job.id, roundsShownLive: `${firstRounds} at first paint, 8 at the end`, stateAtFirstPaint: stateAtFirst, pageErrors: errors.length, requestsOffHost: outside.length });
});

it('the thumbnails are in the job store: served the same after a restart on the same database file', async () => {
  expect(thumbs.length).toBeGreaterThan(0);
  await orch.close();
  orch = await startWithTokens({ maxRunningJobs: 2, db: path.join(dataDir, 'jobs.db') });
  for (const t of thumbs) {
    const res = await http(`${orch.httpUrl}${t.url}`, { token: READ });
    expect({ url: t.url, status: res.status, bytes: Buffer.isBuffer(res.body) ? res.body.toString('hex') : '' }).toEqual({ url: t.url, status: 200, bytes: t.bytes });
  }
});

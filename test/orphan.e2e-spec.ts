// After `kill -9` of the orchestrator, its spawned worker exits too (issue 12, item 9): the worker is
// started with --parent-pid and watches its parent (python-worker/src/noisesearch_worker/parent_watch.py).
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';

jest.setTimeout(180_000);

const ROOT = path.join(__dirname, '..');

function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

it('SIGKILL of the orchestrator: its spawned worker is gone soon after', async () => {
  const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', 'src/main.ts'], {
    cwd: ROOT,
    env: { ...process.env, NOISESEARCH_GRPC_ADDRESS: '127.0.0.1:0', NOISESEARCH_HTTP_PORT: '0', NOISESEARCH_DB: ':memory:', NOISESEARCH_WORKER_ADDRESSES: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const pid = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no worker pid within 120 s:\n${lines.join('\n')}`)), 120_000);
    let workerPid = 0;
    const onLine = (l: string) => {
      lines.push(l);
      const m = /local worker pid (\d+) serving/.exec(l);
      if (m) workerPid = Number(m[1]);
      if (workerPid && /gRPC on /.test(l)) { clearTimeout(timer); resolve(workerPid); }
    };
    readline.createInterface({ input: child.stdout! }).on('line', onLine);
    readline.createInterface({ input: child.stderr! }).on('line', onLine);
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`orchestrator exited (${code}):\n${lines.join('\n')}`)); });
  });
  expect(alive(pid)).toBe(true);
  expect(fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8')).toContain(`--parent-pid\u0000${child.pid}`);
  child.removeAllListeners('exit');
  child.kill('SIGKILL');
  const t0 = Date.now();
  while (alive(pid) && Date.now() - t0 < 30_000) await new Promise((r) => setTimeout(r, 100));
  const gone = !alive(pid);
  if (!gone) process.kill(pid, 'SIGKILL');
  expect(gone).toBe(true);
  process.stdout.write(`orphan: the worker (pid ${pid}) exited ${Date.now() - t0} ms after SIGKILL of its orchestrator\n`);
});

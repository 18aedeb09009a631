import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LocalWorker } from './local-worker';

function script(body: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fake-python-'));
  const file = path.join(dir, 'python');
  fs.writeFileSync(file, `#!/usr/bin/env bash\n${body}\n`, { mode: 0o755 });
  return file;
}

describe('LocalWorker', () => {
  it('reads the address from the ready line and stops the process with SIGTERM', async () => {
    const py = script(`echo "loading"; echo '{"event": "ready", "address": "127.0.0.1:4567"}'; trap 'exit 0' TERM; while true; do sleep 0.1; done`);
    const lines: string[] = [];
    const w = new LocalWorker({ python: py, cwd: os.tmpdir(), startTimeoutMs: 5000, onLog: (l) => lines.push(l) });
    await expect(w.start()).resolves.toBe('127.0.0.1:4567');
    expect(w.running).toBe(true);
    await w.stop(5000);
    expect(w.running).toBe(false);
    expect(lines).toContain('loading');
  });

  it('passes the serve arguments', async () => {
    const py = script(`echo "{\\"event\\": \\"ready\\", \\"address\\": \\"$*\\"}"; sleep 30`);
    const w = new LocalWorker({ python: py, cwd: os.tmpdir(), startTimeoutMs: 5000, extraArgs: ['--x'] });
    await expect(w.start()).resolves.toBe(`-m noisesearch_worker serve --address 127.0.0.1:0 --parent-pid ${process.pid} --x`);
    await w.stop(100);
  });

  it('gives the worker a random token of its own (in its environment), unless one is configured', async () => {
    const saved = process.env.NOISESEARCH_WORKER_TOKEN;
    delete process.env.NOISESEARCH_WORKER_TOKEN;
    try {
      const py = script(`echo "{\\"event\\": \\"ready\\", \\"address\\": \\"$NOISESEARCH_WORKER_TOKEN\\"}"; sleep 30`);
      const a = new LocalWorker({ python: py, cwd: os.tmpdir(), startTimeoutMs: 5000 });
      const b = new LocalWorker({ python: py, cwd: os.tmpdir(), startTimeoutMs: 5000 });
      expect(a.token).toMatch(/^[A-Za-z0-9_-]{32}$/);
      expect(b.token).not.toBe(a.token);
      await expect(a.start()).resolves.toBe(a.token);
      await a.stop(100);
      process.env.NOISESEARCH_WORKER_TOKEN = 'operator-token-0123456789';
      expect(new LocalWorker({ python: py, cwd: os.tmpdir(), startTimeoutMs: 5000 }).token).toBe('operator-token-0123456789');
    } finally {
      if (saved === undefined) delete process.env.NOISESEARCH_WORKER_TOKEN; else process.env.NOISESEARCH_WORKER_TOKEN = saved;
    }
  }, 20_000);

  it('fails with the output tail when the worker dies before ready', async () => {
    const py = script('echo "ImportError: no torch" >&2; exit 3');
    const w = new LocalWorker({ python: py, cwd: os.tmpdir(), startTimeoutMs: 5000 });
    await expect(w.start()).rejects.toThrow(/exited before ready[\s\S]*no torch/);
  });

  it('times out when no ready line comes', async () => {
    const py = script('exec sleep 30');
    const w = new LocalWorker({ python: py, cwd: os.tmpdir(), startTimeoutMs: 300 });
    await expect(w.start()).rejects.toThrow(/no ready line/);
    expect(w.running).toBe(false);
  });
});

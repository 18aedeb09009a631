// A throwaway Redis for tests: Debian's redis-server (scripts/setup.sh installs it) on a free loopback
// port, nothing persisted (--save '' --appendonly no), killed afterwards. No system service is assumed.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePort } from './pg-cluster';

export interface RedisServer {
  /** redis://127.0.0.1:<port> */
  url: string;
  port: number;
  proc: ChildProcess;
  stop(): void;
}

export function redisServerBin(): string | undefined {
  if (process.env.REDIS_SERVER) return process.env.REDIS_SERVER;
  const r = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

export async function startRedis(): Promise<RedisServer> {
  const bin = redisServerBin();
  if (!bin) throw new Error('redis-server not found: run scripts/setup.sh');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ns-redis-'));
  const port = await freePort();
  const proc = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d) => { out += d; });
  proc.stderr!.on('data', (d) => { out += d; });
  const t0 = Date.now();
  // Ready when it accepts connections (it prints "Ready to accept connections" too, but the log format varies).
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`redis-server exited (${proc.exitCode}): ${out}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => { s.end(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (ok) break;
    if (Date.now() - t0 > 20_000) { proc.kill('SIGKILL'); throw new Error(`redis-server did not listen on ${port}: ${out}`); }
    await new Promise((r) => setTimeout(r, 50));
  }
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    proc.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', stop);
  return { url: `redis://127.0.0.1:${port}`, port, proc, stop };
}

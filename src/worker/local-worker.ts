// Spawns the Python worker (`python -m noisesearch_worker serve --address 127.0.0.1:0`), reads the
// one JSON ready line it prints on stdout ({"event": "ready", "address": "127.0.0.1:PORT"}) and
// stops it with SIGTERM (then SIGKILL after a grace period). The worker takes a random token of this
// process (NOISESEARCH_WORKER_TOKEN in its environment; or the operator's, when set), so no other local
// process can call its RPCs, and `--parent-pid` of this process, so it exits when this process dies
// (even by SIGKILL: python-worker/src/noisesearch_worker/parent_watch.py).
import { ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';

export interface LocalWorkerOptions {
  python: string;
  cwd: string;
  extraArgs?: string[];
  startTimeoutMs: number;
  env?: NodeJS.ProcessEnv;
  /** The worker's token (default: NOISESEARCH_WORKER_TOKEN when set, else a random one per LocalWorker). */
  token?: string;
  /** Receives every line the worker writes (stdout other than the ready line, and stderr). */
  onLog?: (line: string, stream: 'stdout' | 'stderr') => void;
  /** The process exited after it was ready, and not because stop() was called. */
  onExit?: (pid: number | undefined, code: number | null, signal: NodeJS.Signals | null) => void;
}

/** The repository root: the nearest folder above this file holding package.json. */
export function repoRoot(from = __dirname): string {
  let dir = from;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'proto'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) return process.cwd();
    dir = up;
  }
}

export class LocalWorker {
  private child?: ChildProcess;
  private exited?: Promise<void>;
  address?: string;
  private readonly tail: string[] = [];
  private stopping = false;
  /** What every call to this worker must send as `authorization: Bearer <token>`. */
  readonly token: string;

  constructor(private readonly options: LocalWorkerOptions) {
    this.token = options.token || process.env.NOISESEARCH_WORKER_TOKEN || randomBytes(24).toString('base64url');
  }

  /** The command line (after the interpreter) that start() runs. */
  get args(): string[] {
    return ['-m', 'noisesearch_worker', 'serve', '--address', '127.0.0.1:0', '--parent-pid', String(process.pid), ...(this.options.extraArgs ?? [])];
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Starts the worker and resolves with its address once it printed the ready line. */
  start(): Promise<string> {
    const { python, cwd } = this.options;
    const exe = path.isAbsolute(python) || !python.includes('/') ? python : path.resolve(cwd, python);
    const args = this.args;
    const child = spawn(exe, args, {
      cwd,
      env: { ...process.env, PYTHONUNBUFFERED: '1', ...this.options.env, NOISESEARCH_WORKER_TOKEN: this.token },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    this.stopping = false;
    let ready = false;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    child.once('exit', (code, signal) => {
      if (ready && !this.stopping) this.options.onExit?.(child.pid, code, signal);
    });
    child.once('exit', () => {
      // Once the worker is gone, a grandchild holding the pipes must not keep this process alive.
      setTimeout(() => { child.stdout?.destroy(); child.stderr?.destroy(); }, 1_000).unref();
    });
    const remember = (line: string, stream: 'stdout' | 'stderr') => {
      this.tail.push(line);
      if (this.tail.length > 40) this.tail.shift();
      this.options.onLog?.(line, stream);
    };
    readline.createInterface({ input: child.stderr! }).on('line', (l) => remember(l, 'stderr'));
    return new Promise<string>((resolve, reject) => {
      let settled = false;
      const fail = (why: string) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        const err = new Error(`worker (${exe} ${args.join(' ')}) ${why}${this.tail.length ? `\n${this.tail.join('\n')}` : ''}`);
        this.stop(2_000).then(() => reject(err), () => reject(err));
      };
      const timer = setTimeout(() => fail(`printed no ready line within ${this.options.startTimeoutMs} ms`), this.options.startTimeoutMs);
      child.once('error', (e) => fail(`could not start: ${e.message}`));
      child.once('exit', (code, signal) => fail(`exited before ready (code ${code}, signal ${signal})`));
      readline.createInterface({ input: child.stdout! }).on('line', (line) => {
        if (!settled && line.trim().startsWith('{')) {
          try {
            const msg = JSON.parse(line) as { event?: string; address?: string };
            if (msg.event === 'ready' && typeof msg.address === 'string') {
              settled = true;
              ready = true;
              clearTimeout(timer);
              this.address = msg.address;
              resolve(msg.address);
              return;
            }
          } catch {
            /* not our line */
          }
        }
        remember(line, 'stdout');
      });
    });
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  async stop(graceMs = 10_000): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    this.stopping = true;
    child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.exited,
      new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          if (this.running) child.kill('SIGKILL');
          resolve();
        }, graceMs);
      }),
    ]);
    clearTimeout(timer);
    await this.exited;
    // Grandchildren may still hold the pipes open: let go of them.
    child.stdout?.destroy();
    child.stderr?.destroy();
  }

  /** Synchronous last resort (process 'exit' handlers cannot wait). */
  killNow(): void {
    if (this.running) this.child!.kill('SIGTERM');
  }
}

// One configuration schema for the orchestrator: environment variables with defaults, validated once.
// No framework imports: the CLI, the bench and the Nest app all read it the same way.
import { DEFAULT_LIMITS, type Limits } from '../search/catalog';

export interface AppConfig {
  /** Public gRPC API (noisesearch.search.v1.Search + grpc.health.v1). */
  grpcAddress: string;
  /** HTTP (GET /health). 0 disables the HTTP listener. */
  httpPort: number;
  httpHost: string;
  /** Existing workers to use; empty = spawn one local Python worker. */
  workerAddresses: string[];
  /** A DNS name (host:port) re-resolved every workerDnsRefreshMs, one worker per address (a Kubernetes headless Service). */
  workerDns: string;
  workerDnsRefreshMs: number;
  /** Python interpreter for the spawned worker. */
  python: string;
  /** Working directory of the spawned worker (the repository root by default). */
  workerCwd: string;
  /** Extra arguments appended to `-m noisesearch_worker serve --address 127.0.0.1:0`. */
  workerExtraArgs: string[];
  /** How long to wait for a worker to print its ready line / answer health checks. */
  workerStartTimeoutMs: number;
  /** Deadline of every worker call except Denoise / XPrediction. */
  workerDeadlineMs: number;
  /** Deadline of Denoise and XPrediction calls (they run the network). */
  workerDenoiseDeadlineMs: number;
  /** Retries of idempotent worker calls on UNAVAILABLE. */
  workerRetries: number;
  workerRetryBackoffMs: number;
  /** Max gRPC message size, both directions, both the public server and the worker channel. */
  maxMessageBytes: number;
  /** Jobs running at once; the rest wait QUEUED. */
  maxRunningJobs: number;
  /** Finished jobs kept in memory (oldest finished are forgotten first). */
  maxJobsKept: number;
  /** SQLite database of jobs, rounds, checkpoints and results (':memory:' = nothing survives the process), or postgres://… (shared by replicas). */
  db: string;
  /** redis://host:port of the BullMQ queue that dispatches jobs to replicas; required with a postgres:// db, refused with SQLite. */
  queue: string;
  /** PostgreSQL only: how long the queue's lock of a replica on a running job lasts without renewal (BullMQ renews it every half). */
  leaseMs: number;
  /** Result images go to <dataDir>/results/<sha256>.png; empty = the database file's folder. */
  dataDir: string;
  /** On SIGTERM: how long running jobs get to commit their round in flight before it is cancelled. */
  drainTimeoutMs: number;
  /** Server-side limits on a request (the search core's Limits). */
  maxCandidates: number;
  maxBudgetNfes: number;
  maxOutputs: number;
  maxSteps: number;
  logLevel: 'error' | 'warn' | 'log' | 'debug' | 'verbose';
  /** Access control (src/auth/): 'on' (default) or 'off'. On without tokens = one random admin token per process. */
  auth: 'on' | 'off';
  /** Bearer tokens and their roles (`token:admin,token:read`); see src/auth/tokens.ts. */
  tokens: TokenSpec[];
  /** PEM files: TLS for the public gRPC server when both are set; a client CA makes it mutual TLS. */
  tlsCert: string;
  tlsKey: string;
  tlsClientCa: string;
}

export type TokenRole = 'admin' | 'read';
export interface TokenSpec {
  token: string;
  role: TokenRole;
}

export class ConfigError extends Error {
  constructor(readonly variable: string, message: string) {
    super(`${variable}: ${message}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

interface FieldSpec<T> {
  env: string;
  default: T;
  description: string;
  parse: (raw: string, env: string) => T;
}

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => (raw: string, env: string): number => {
  const s = raw.trim();
  if (!/^-?\d+$/.test(s)) throw new ConfigError(env, `expected an integer, got ${JSON.stringify(raw)}`);
  const v = Number(s);
  if (v < min || v > max) throw new ConfigError(env, `must be in [${min}, ${max}], got ${v}`);
  return v;
};
const str = (raw: string): string => raw.trim();
const address = (raw: string, env: string): string => {
  const s = raw.trim();
  if (!/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}$/.test(s) && !s.startsWith('unix:')) {
    throw new ConfigError(env, `expected host:port, got ${JSON.stringify(raw)}`);
  }
  return s;
};
const addressList = (raw: string, env: string): string[] =>
  raw.split(',').map((s) => s.trim()).filter((s) => s.length > 0).map((s) => address(s, env));
const words = (raw: string): string[] => raw.split(/\s+/).filter((s) => s.length > 0);
const logLevel = (raw: string, env: string): AppConfig['logLevel'] => {
  const levels = ['error', 'warn', 'log', 'debug', 'verbose'] as const;
  const s = raw.trim() as AppConfig['logLevel'];
  if (!levels.includes(s)) throw new ConfigError(env, `expected one of ${levels.join(', ')}, got ${JSON.stringify(raw)}`);
  return s;
};

const onOff = (raw: string, env: string): 'on' | 'off' => {
  const s = raw.trim().toLowerCase();
  if (s !== 'on' && s !== 'off') throw new ConfigError(env, `expected on or off, got ${JSON.stringify(raw)}`);
  return s;
};
/** `tok1:admin,tok2:read` (a token without a role is admin). Tokens: 16+ characters of [A-Za-z0-9._~+/=-]. */
const tokenList = (raw: string, env: string): TokenSpec[] =>
  raw.split(',').map((s) => s.trim()).filter((s) => s.length > 0).map((item) => {
    const i = item.lastIndexOf(':');
    const token = i < 0 ? item : item.slice(0, i);
    const role = i < 0 ? 'admin' : item.slice(i + 1);
    if (role !== 'admin' && role !== 'read') throw new ConfigError(env, `role must be admin or read, got ${JSON.stringify(role)}`);
    if (!/^[A-Za-z0-9._~+/=-]{16,}$/.test(token)) {
      throw new ConfigError(env, 'each token must be at least 16 characters of A-Z a-z 0-9 . _ ~ + / = -');
    }
    return { token, role };
  });

const redisUrl = (raw: string, env: string): string => {
  const s = raw.trim();
  if (!/^rediss?:\/\/[^\s/]+(\/\d+)?$/.test(s)) throw new ConfigError(env, `expected redis://host:port (or rediss://, with an optional /db), got ${JSON.stringify(raw)}`);
  return s;
};

const MiB = 1024 * 1024;

export const CONFIG_SCHEMA: { [K in keyof AppConfig]: FieldSpec<AppConfig[K]> } = {
  grpcAddress: { env: 'NOISESEARCH_GRPC_ADDRESS', default: '127.0.0.1:50051', parse: address, description: 'public gRPC API address (host:port; port 0 = any free port)' },
  httpPort: { env: 'NOISESEARCH_HTTP_PORT', default: 3000, parse: int(0, 65535), description: 'HTTP port for GET /health (0 = no HTTP listener)' },
  httpHost: { env: 'NOISESEARCH_HTTP_HOST', default: '127.0.0.1', parse: str, description: 'HTTP bind host' },
  workerAddresses: { env: 'NOISESEARCH_WORKER_ADDRESSES', default: [], parse: addressList, description: 'comma-separated worker addresses; empty = spawn a local Python worker' },
  workerDns: { env: 'NOISESEARCH_WORKER_DNS', default: '', parse: address, description: 'a DNS name host:port re-resolved periodically, one worker per address (e.g. a headless Service); instead of NOISESEARCH_WORKER_ADDRESSES' },
  workerDnsRefreshMs: { env: 'NOISESEARCH_WORKER_DNS_REFRESH_MS', default: 10_000, parse: int(100), description: 'how often NOISESEARCH_WORKER_DNS is re-resolved' },
  python: { env: 'NOISESEARCH_PYTHON', default: 'python-worker/.venv/bin/python', parse: str, description: 'Python interpreter of the spawned worker' },
  workerCwd: { env: 'NOISESEARCH_WORKER_CWD', default: '', parse: str, description: 'working directory of the spawned worker (default: the repository root)' },
  workerExtraArgs: { env: 'NOISESEARCH_WORKER_ARGS', default: [], parse: words, description: 'extra arguments for `noisesearch_worker serve` (space separated)' },
  workerStartTimeoutMs: { env: 'NOISESEARCH_WORKER_START_TIMEOUT_MS', default: 180_000, parse: int(1), description: 'worker start / readiness timeout' },
  workerDeadlineMs: { env: 'NOISESEARCH_WORKER_DEADLINE_MS', default: 120_000, parse: int(1), description: 'deadline of every worker call but Denoise/XPrediction' },
  workerDenoiseDeadlineMs: { env: 'NOISESEARCH_WORKER_DENOISE_DEADLINE_MS', default: 3_600_000, parse: int(1), description: 'deadline of Denoise/XPrediction calls' },
  workerRetries: { env: 'NOISESEARCH_WORKER_RETRIES', default: 3, parse: int(0, 100), description: 'retries of idempotent worker calls on UNAVAILABLE' },
  workerRetryBackoffMs: { env: 'NOISESEARCH_WORKER_RETRY_BACKOFF_MS', default: 200, parse: int(0), description: 'first retry backoff (doubles each retry)' },
  maxMessageBytes: { env: 'NOISESEARCH_MAX_MESSAGE_BYTES', default: 64 * MiB, parse: int(1024), description: 'max gRPC message size (public API and worker channel)' },
  maxRunningJobs: { env: 'NOISESEARCH_MAX_RUNNING_JOBS', default: 16, parse: int(1, 1000), description: 'jobs running at once (their worker calls share the worker micro-batches); the rest wait QUEUED' },
  maxJobsKept: { env: 'NOISESEARCH_MAX_JOBS_KEPT', default: 1000, parse: int(1), description: 'finished jobs kept (oldest finished are deleted first)' },
  db: { env: 'NOISESEARCH_DB', default: 'data/noisesearch.db', parse: str, description: 'SQLite file of jobs, rounds, search checkpoints and results (:memory: = not persistent), or postgres://user:pass@host:port/db (several replicas share it)' },
  queue: { env: 'NOISESEARCH_QUEUE', default: '', parse: redisUrl, description: 'redis://host:port: the BullMQ queue that dispatches jobs to the replicas; required with a postgres:// NOISESEARCH_DB, not used with SQLite' },
  leaseMs: { env: 'NOISESEARCH_LEASE_MS', default: 15_000, parse: int(500), description: 'PostgreSQL: a running job\'s lease (the queue\'s lock); a replica that stops renewing it (dead, paused) loses the job to another after this long' },
  dataDir: { env: 'NOISESEARCH_DATA_DIR', default: '', parse: str, description: 'result images go to <dir>/results/<sha256>.png (default: the folder of NOISESEARCH_DB)' },
  drainTimeoutMs: { env: 'NOISESEARCH_DRAIN_TIMEOUT_MS', default: 30_000, parse: int(0), description: 'SIGTERM: wait this long for running jobs to commit their round, then cancel it (they resume on restart)' },
  maxCandidates: { env: 'NOISESEARCH_MAX_CANDIDATES', default: DEFAULT_LIMITS.maxCandidates, parse: int(1), description: 'most candidates a request may ask for' },
  maxBudgetNfes: { env: 'NOISESEARCH_MAX_BUDGET_NFES', default: DEFAULT_LIMITS.maxBudgetNfes, parse: int(1), description: 'most search NFEs a request may plan' },
  maxOutputs: { env: 'NOISESEARCH_MAX_OUTPUTS', default: DEFAULT_LIMITS.maxOutputs, parse: int(1), description: 'most outputs a request may ask for' },
  maxSteps: { env: 'NOISESEARCH_MAX_STEPS', default: DEFAULT_LIMITS.maxSteps, parse: int(1), description: 'most solver steps a request may ask for' },
  logLevel: { env: 'NOISESEARCH_LOG_LEVEL', default: 'log', parse: logLevel, description: 'log level (error, warn, log, debug, verbose)' },
  auth: { env: 'NOISESEARCH_AUTH', default: 'on', parse: onOff, description: 'access control: on, or off (no tokens checked anywhere; for trusted networks only)' },
  tokens: { env: 'NOISESEARCH_TOKENS', default: [], parse: tokenList, description: 'bearer tokens `token:admin,token:read` (empty with auth on = a random admin token per process, printed at start)' },
  tlsCert: { env: 'NOISESEARCH_TLS_CERT', default: '', parse: str, description: 'PEM certificate chain: TLS on the public gRPC server (with NOISESEARCH_TLS_KEY)' },
  tlsKey: { env: 'NOISESEARCH_TLS_KEY', default: '', parse: str, description: 'PEM private key of NOISESEARCH_TLS_CERT' },
  tlsClientCa: { env: 'NOISESEARCH_TLS_CLIENT_CA', default: '', parse: str, description: 'PEM CA bundle: require client certificates signed by it (mutual TLS)' },
};

/** Reads and validates the configuration; `overrides` win over the environment (CLI and tests). */
export function loadConfig(env: Env = process.env, overrides: Partial<AppConfig> = {}): AppConfig {
  const out: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(CONFIG_SCHEMA) as [keyof AppConfig, FieldSpec<unknown>][]) {
    const raw = env[spec.env];
    out[key] = raw === undefined || raw.trim() === '' ? spec.default : spec.parse(raw, spec.env);
  }
  const config = { ...(out as unknown as AppConfig), ...overrides };
  if (!!config.tlsCert !== !!config.tlsKey) {
    throw new ConfigError(config.tlsCert ? 'NOISESEARCH_TLS_KEY' : 'NOISESEARCH_TLS_CERT', 'TLS needs both NOISESEARCH_TLS_CERT and NOISESEARCH_TLS_KEY');
  }
  if (config.workerDns && config.workerAddresses.length > 0) throw new ConfigError('NOISESEARCH_WORKER_DNS', 'set NOISESEARCH_WORKER_DNS or NOISESEARCH_WORKER_ADDRESSES, not both');
  const postgres = /^postgres(ql)?:\/\//.test(config.db);
  if (postgres && !config.queue) throw new ConfigError('NOISESEARCH_QUEUE', 'a postgres:// NOISESEARCH_DB (shared by replicas) needs the job queue: set NOISESEARCH_QUEUE=redis://host:port');
  if (!postgres && config.queue) throw new ConfigError('NOISESEARCH_QUEUE', 'the job queue is for replicas sharing a postgres:// NOISESEARCH_DB; SQLite runs its jobs in process');
  if (config.tlsClientCa && !config.tlsCert) throw new ConfigError('NOISESEARCH_TLS_CLIENT_CA', 'needs NOISESEARCH_TLS_CERT and NOISESEARCH_TLS_KEY');
  return config;
}

/** One line per variable: name, default, description (for --help and the README). */
export function describeConfig(): string {
  return Object.values(CONFIG_SCHEMA)
    .map((s) => `  ${s.env.padEnd(40)} ${s.description} (default: ${JSON.stringify(s.default)})`)
    .join('\n');
}

export function limitsOf(c: AppConfig): Limits {
  return { maxCandidates: c.maxCandidates, maxBudgetNfes: c.maxBudgetNfes, maxOutputs: c.maxOutputs, maxSteps: c.maxSteps };
}

export const APP_CONFIG = Symbol('APP_CONFIG');

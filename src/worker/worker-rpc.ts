// A thin, typed, promise-based wrapper over the ts-proto WorkerClient (grpc-js):
// a deadline on every call, retries of idempotent calls on UNAVAILABLE only,
// explicit message-size limits on the channel, and cancellation by AbortSignal (call.cancel()).
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import {
  DecodeRequest, DecodeResponse, DenoiseRequest, DenoiseResponse, DescribeRequest, DescribeResponse,
  FetchRequest, FetchResponse, ForwardNoiseRequest, InitialNoisesRequest, MaterializeRequest, PutRequest,
  ReleaseRequest, ReleaseResponse, RunRequest, RunResponse, ScoreRequest, ScoreResponse, TensorsResponse, WorkerClient,
  XPredictionRequest, ZeroOrderNeighboursRequest,
} from '../gen/noisesearch/worker/v1/worker';

/** Request and response type of every Worker RPC (keys are the ts-proto client's method names). */
export interface WorkerMethods {
  describe: [DescribeRequest, DescribeResponse];
  initialNoises: [InitialNoisesRequest, TensorsResponse];
  zeroOrderNeighbours: [ZeroOrderNeighboursRequest, TensorsResponse];
  denoise: [DenoiseRequest, DenoiseResponse];
  forwardNoise: [ForwardNoiseRequest, TensorsResponse];
  xPrediction: [XPredictionRequest, DenoiseResponse];
  score: [ScoreRequest, ScoreResponse];
  decode: [DecodeRequest, DecodeResponse];
  materialize: [MaterializeRequest, TensorsResponse];
  fetch: [FetchRequest, FetchResponse];
  put: [PutRequest, TensorsResponse];
  release: [ReleaseRequest, ReleaseResponse];
  run: [RunRequest, RunResponse];
}
export type WorkerMethod = keyof WorkerMethods;

/** Calls that may be repeated without changing the outcome (retried on UNAVAILABLE only).
 *  ForwardNoise / Denoise / XPrediction / Put / Release create or free handles and are never retried. */
export const IDEMPOTENT_METHODS: ReadonlySet<WorkerMethod> = new Set<WorkerMethod>([
  'describe', 'initialNoises', 'zeroOrderNeighbours', 'fetch', 'decode', 'score', 'materialize',
]);
/** Calls that run the network: they get the long deadline. */
export const LONG_METHODS: ReadonlySet<WorkerMethod> = new Set<WorkerMethod>(['denoise', 'xPrediction', 'run']);

export interface WorkerRpcOptions {
  deadlineMs: number;
  denoiseDeadlineMs: number;
  retries: number;
  retryBackoffMs: number;
  maxMessageBytes: number;
  /** Shared worker token, sent as `authorization: Bearer <token>` (default: NOISESEARCH_WORKER_TOKEN). */
  token?: string;
}

export const DEFAULT_RPC_OPTIONS: WorkerRpcOptions = {
  deadlineMs: 120_000,
  denoiseDeadlineMs: 3_600_000,
  retries: 3,
  retryBackoffMs: 200,
  maxMessageBytes: 64 * 1024 * 1024,
};

/** A failed worker call; `code` is the gRPC status code. */
export class WorkerCallError extends Error {
  constructor(
    readonly method: WorkerMethod,
    readonly code: grpc.status,
    readonly details: string,
    readonly address: string,
  ) {
    super(`worker ${address} ${method}: ${grpc.status[code] ?? code}: ${details}`);
    this.name = 'WorkerCallError';
  }
}

/** The signal fired before or during the call. */
export class WorkerCallAbortedError extends Error {
  constructor(readonly method: WorkerMethod) {
    super(`worker call ${method} cancelled`);
    this.name = 'AbortError';
  }
}

/** The part of WorkerClient this class uses (a fake can stand in for it in unit tests). */
export type UnaryFn = (
  request: unknown,
  metadata: grpc.Metadata,
  options: Partial<grpc.CallOptions>,
  callback: (error: grpc.ServiceError | null, response: unknown) => void,
) => { cancel(): void };
export type WorkerClientLike = { [K in WorkerMethod]: UnaryFn } & { close(): void };

export function channelOptions(maxMessageBytes: number): grpc.ChannelOptions {
  return {
    'grpc.max_send_message_length': maxMessageBytes,
    'grpc.max_receive_message_length': maxMessageBytes,
    'grpc.keepalive_time_ms': 30_000,
    'grpc.keepalive_timeout_ms': 10_000,
  };
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(done, ms);
    function done() { clearTimeout(t); signal?.removeEventListener('abort', done); resolve(); }
    signal?.addEventListener('abort', done, { once: true });
  });

let healthCtor: grpc.ServiceClientConstructor | undefined;
function healthClientConstructor(): grpc.ServiceClientConstructor {
  if (!healthCtor) {
    const def = protoLoader.loadSync(healthProtoPath, { keepCase: true, longs: String, enums: String, defaults: true });
    const pkg = grpc.loadPackageDefinition(def) as any;
    healthCtor = pkg.grpc.health.v1.Health as grpc.ServiceClientConstructor;
  }
  return healthCtor;
}

export class WorkerRpc {
  readonly options: WorkerRpcOptions;
  private readonly client: WorkerClientLike;
  private health?: grpc.Client;
  /** Calls in flight right now (for load balancing and for "is the worker idle"). */
  inFlight = 0;
  /** Calls that do work (attempts, retries included); the pool's periodic Describe probes are not counted. */
  calls = 0;

  constructor(readonly address: string, options: Partial<WorkerRpcOptions> = {}, client?: WorkerClientLike) {
    this.options = { ...DEFAULT_RPC_OPTIONS, token: process.env.NOISESEARCH_WORKER_TOKEN || undefined, ...options };
    this.client = client ?? (new WorkerClient(address, grpc.credentials.createInsecure(),
      channelOptions(this.options.maxMessageBytes)) as unknown as WorkerClientLike);
  }

  /** One RPC with deadline, retry policy and cancellation. */
  async call<M extends WorkerMethod>(method: M, request: WorkerMethods[M][0], signal?: AbortSignal): Promise<WorkerMethods[M][1]> {
    const retries = IDEMPOTENT_METHODS.has(method) ? this.options.retries : 0;
    let backoff = this.options.retryBackoffMs;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.once(method, request, signal);
      } catch (e) {
        const retryable = e instanceof WorkerCallError && e.code === grpc.status.UNAVAILABLE;
        if (!retryable || attempt >= retries || signal?.aborted) throw e;
        await sleep(backoff, signal);
        if (signal?.aborted) throw new WorkerCallAbortedError(method);
        backoff *= 2;
      }
    }
  }

  private once<M extends WorkerMethod>(method: M, request: WorkerMethods[M][0], signal?: AbortSignal): Promise<WorkerMethods[M][1]> {
    if (signal?.aborted) return Promise.reject(new WorkerCallAbortedError(method));
    const deadlineMs = LONG_METHODS.has(method) ? this.options.denoiseDeadlineMs : this.options.deadlineMs;
    return new Promise((resolve, reject) => {
      let onAbort: (() => void) | undefined;
      this.inFlight++;
      if (method !== 'describe') this.calls++;
      const metadata = new grpc.Metadata();
      if (this.options.token) metadata.set('authorization', `Bearer ${this.options.token}`);
      const call = this.client[method](request, metadata, { deadline: Date.now() + deadlineMs }, (err, res) => {
        this.inFlight--;
        if (onAbort) signal?.removeEventListener('abort', onAbort);
        if (!err) return resolve(res as WorkerMethods[M][1]);
        if (err.code === grpc.status.CANCELLED && signal?.aborted) return reject(new WorkerCallAbortedError(method));
        reject(new WorkerCallError(method, err.code, err.details || err.message, this.address));
      });
      if (signal) {
        onAbort = () => call.cancel();
        signal.addEventListener('abort', onAbort, { once: true });
      }
    });
  }

  /** grpc.health.v1 Check: true when SERVING. A worker without the health service counts as ready
   *  once Describe answers. */
  async isServing(timeoutMs = 2_000): Promise<boolean> {
    if (!this.health) {
      const Ctor = healthClientConstructor();
      this.health = new Ctor(this.address, grpc.credentials.createInsecure());
    }
    const status = await new Promise<{ ok: boolean; unimplemented: boolean }>((resolve) => {
      (this.health as any).Check({ service: '' }, { deadline: Date.now() + timeoutMs },
        (err: grpc.ServiceError | null, res: { status: string }) => {
          if (err) resolve({ ok: false, unimplemented: err.code === grpc.status.UNIMPLEMENTED });
          else resolve({ ok: res.status === 'SERVING', unimplemented: false });
        });
    });
    if (!status.unimplemented) return status.ok;
    try {
      await this.once('describe', {}, undefined);
      return true;
    } catch {
      return false;
    }
  }

  /** Polls the health service until SERVING or the timeout. */
  async waitForReady(timeoutMs: number, signal?: AbortSignal, pollMs = 250): Promise<void> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      if (signal?.aborted) throw new Error(`waiting for worker ${this.address}: aborted`);
      if (await this.isServing(Math.min(2_000, Math.max(100, until - Date.now())))) return;
      if (Date.now() >= until) throw new Error(`worker ${this.address} not serving after ${timeoutMs} ms`);
      await sleep(pollMs, signal);
    }
  }

  close(): void {
    this.client.close();
    this.health?.close();
  }
}

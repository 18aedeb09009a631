// Shared by the e2e tests, the CLI and the bench: a public-API client with promise/array helpers.
import * as grpc from '@grpc/grpc-js';
import {
  Job, JobState, Plan, SearchClient, SearchEvent, SearchRequest,
} from '../gen/noisesearch/search/v1/search';
import { WorkerClient } from '../gen/noisesearch/worker/v1/worker';
import { clientToken } from '../auth/tokens';

const MiB = 1024 * 1024;
export const channelOptions = { 'grpc.max_send_message_length': 64 * MiB, 'grpc.max_receive_message_length': 64 * MiB };

export interface ClientAuth {
  /** Bearer token sent as `authorization` metadata; default NOISESEARCH_TOKEN, or the token of an
   *  orchestrator started in this process at `address`; '' sends none. */
  token?: string;
  /** TLS: the server's CA (PEM); `true` = the system's roots. Default: plaintext. */
  tls?: Buffer | true;
  /** Extra channel options (e.g. grpc.ssl_target_name_override for tests). */
  options?: grpc.ChannelOptions;
}

/** A client interceptor adding `authorization: Bearer <token>` to every call. */
export function bearerInterceptor(token: string): grpc.Interceptor {
  return (options, next) => new grpc.InterceptingCall(next(options), {
    start(metadata, listener, nextStart) {
      metadata.set('authorization', `Bearer ${token}`);
      nextStart(metadata, listener);
    },
  });
}

export function searchClient(address: string, auth: ClientAuth = {}): SearchClient {
  const token = auth.token ?? clientToken(address);
  const creds = auth.tls === undefined ? grpc.credentials.createInsecure()
    : grpc.credentials.createSsl(auth.tls === true ? null : auth.tls);
  return new SearchClient(address, creds, {
    ...channelOptions,
    ...auth.options,
    ...(token ? { interceptors: [bearerInterceptor(token)] } : {}),
  });
}

export function workerClient(address: string): WorkerClient {
  return new WorkerClient(address, grpc.credentials.createInsecure(), channelOptions);
}

/** Promisifies a ts-proto grpc-js unary method. */
export function unary<Req, Res>(
  client: grpc.Client,
  method: (req: Req, cb: (e: grpc.ServiceError | null, r: Res) => void) => grpc.ClientUnaryCall,
  req: Req,
): Promise<Res> {
  return new Promise((resolve, reject) => method.call(client, req, (e, r) => (e ? reject(e) : resolve(r))));
}

/** Every event of a server stream; rejects with the status error (events so far attached). */
export function collect(stream: grpc.ClientReadableStream<SearchEvent>, onEvent?: (e: SearchEvent) => void): Promise<SearchEvent[]> {
  const events: SearchEvent[] = [];
  return new Promise((resolve, reject) => {
    stream.on('data', (e: SearchEvent) => { events.push(e); onEvent?.(e); });
    stream.on('error', (err) => reject(Object.assign(err, { events })));
    stream.on('end', () => resolve(events));
  });
}

export const api = (c: SearchClient) => ({
  search: (r: SearchRequest, onEvent?: (e: SearchEvent) => void) => collect(c.search(r), onEvent),
  plan: (r: SearchRequest) => unary<SearchRequest, Plan>(c, c.planSearch, r),
  submit: (r: SearchRequest) => unary<SearchRequest, Job>(c, c.submit, r),
  get: (id: string) => unary<{ id: string }, Job>(c, c.get, { id }),
  cancel: (id: string) => unary<{ id: string }, Job>(c, c.cancel, { id }),
  watch: (id: string) => collect(c.watch({ id })),
  list: (state = JobState.JOB_STATE_UNSPECIFIED, limit = 0) =>
    unary<{ state: JobState; limit: number }, { jobs: Job[] }>(c, c.list, { state, limit }),
});

export function kindOf(e: SearchEvent): 'plan' | 'round' | 'result' | 'none' {
  return e.plan ? 'plan' : e.round ? 'round' : e.result ? 'result' : 'none';
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

// Access control of the public gRPC server, at the transport (a grpc-js server interceptor, so a call
// is refused before its message is read or any handler runs):
//   - `authorization: Bearer <token>` metadata: UNAUTHENTICATED when missing or wrong, PERMISSION_DENIED
//     for a read-only token on Search / Submit / Cancel; grpc.health.v1 stays open;
//   - a request whose bytes do not decode answers INVALID_ARGUMENT (grpc-js alone says INTERNAL);
//   - every call's final status is counted per method and code (Prometheus, src/admin/metrics.service.ts);
//   - TLS (and mutual TLS) server credentials from the configuration.
import * as fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { bounded } from '../search/errors';
import type { GrpcOptions } from '@nestjs/microservices';
import type { AppConfig } from '../config/config';
import { Access, TokenAuthority, bearerToken } from './tokens';

/** Methods of the public API and what they need. Anything not listed (bar health) needs `read`. */
export const GRPC_ACCESS: Record<string, Access> = {
  '/noisesearch.search.v1.Search/Search': 'admin',
  '/noisesearch.search.v1.Search/Submit': 'admin',
  '/noisesearch.search.v1.Search/Cancel': 'admin',
  '/noisesearch.search.v1.Search/PlanSearch': 'read',
  '/noisesearch.search.v1.Search/Get': 'read',
  '/noisesearch.search.v1.Search/Watch': 'read',
  '/noisesearch.search.v1.Search/List': 'read',
};
const OPEN_PREFIX = '/grpc.health.v1.Health/';

/** Counts of finished gRPC calls by method and status code name (read by the metrics). */
export class GrpcCallStats {
  readonly counts = new Map<string, { method: string; code: string; count: number }>();

  record(method: string, code: grpc.status): void {
    const name = grpc.status[code] ?? String(code);
    const key = `${method}|${name}`;
    const e = this.counts.get(key);
    if (e) e.count++;
    else this.counts.set(key, { method, code: name, count: 1 });
  }
}

const MALFORMED = Symbol('malformed request');
type Malformed = { [MALFORMED]: string };
const isMalformed = (m: unknown): m is Malformed => typeof m === 'object' && m !== null && MALFORMED in m;

/** Wraps every method's request decoder so that undecodable bytes reach the interceptor as a marker. */
export function tolerateMalformed(packageDefinition: Record<string, unknown>): void {
  for (const service of Object.values(packageDefinition)) {
    if (typeof service !== 'object' || service === null || 'format' in service) continue; // message types
    for (const method of Object.values(service as Record<string, { requestDeserialize?: (b: Buffer) => unknown }>)) {
      const decode = method?.requestDeserialize;
      if (typeof decode !== 'function' || (decode as { wrapped?: boolean }).wrapped) continue;
      const wrapped = (bytes: Buffer): unknown => {
        try {
          return decode(bytes);
        } catch (e) {
          return { [MALFORMED]: e instanceof Error ? e.message : String(e) };
        }
      };
      (wrapped as { wrapped?: boolean }).wrapped = true;
      method.requestDeserialize = wrapped;
    }
  }
}

export function authInterceptor(auth: TokenAuthority, stats?: GrpcCallStats): grpc.ServerInterceptor {
  return (descriptor, call) => {
    const method = descriptor.path;
    const open = method.startsWith(OPEN_PREFIX);
    const deny = (code: grpc.status, details: string) => {
      stats?.record(method, code);
      call.sendStatus({ code, details, metadata: new grpc.Metadata() });
    };
    const listener = new grpc.ServerListenerBuilder()
      .withOnReceiveMetadata((metadata, next) => {
        if (!open) {
          const d = auth.decide(bearerToken(metadata.get('authorization')[0] as string | undefined), GRPC_ACCESS[method] ?? 'read');
          if (!d.ok) return deny(d.status === 'forbidden' ? grpc.status.PERMISSION_DENIED : grpc.status.UNAUTHENTICATED, d.message);
        }
        next(metadata);
      })
      .withOnReceiveMessage((message, next) => {
        if (isMalformed(message)) return deny(grpc.status.INVALID_ARGUMENT, bounded(`request (the whole message) is malformed: cannot decode it (${message[MALFORMED]})`, 300));
        next(message);
      })
      .build();
    const responder = new grpc.ResponderBuilder()
      .withStart((next) => next(listener))
      .withSendStatus((status, next) => {
        stats?.record(method, status.code);
        next(status);
      })
      .build();
    return new grpc.ServerInterceptingCall(call, responder);
  };
}

/** TLS server credentials from NOISESEARCH_TLS_CERT / _KEY (/ _CLIENT_CA), or undefined (plaintext). */
export function serverCredentials(config: Pick<AppConfig, 'tlsCert' | 'tlsKey' | 'tlsClientCa'>): grpc.ServerCredentials | undefined {
  if (!config.tlsCert) return undefined;
  const ca = config.tlsClientCa ? fs.readFileSync(config.tlsClientCa) : null;
  return grpc.ServerCredentials.createSsl(ca, [{ cert_chain: fs.readFileSync(config.tlsCert), private_key: fs.readFileSync(config.tlsKey) }], !!ca);
}

/** Adds the interceptor, the decoder wrapper and the credentials to Nest's gRPC options. */
export function withAccessControl(options: GrpcOptions, auth: TokenAuthority, config: AppConfig, stats?: GrpcCallStats): GrpcOptions {
  const o = options.options as GrpcOptions['options'] & { channelOptions?: Record<string, unknown>; credentials?: unknown };
  const onLoad = o.onLoadPackageDefinition;
  return {
    ...options,
    options: {
      ...o,
      channelOptions: { ...(o.channelOptions ?? {}), interceptors: [authInterceptor(auth, stats)] },
      credentials: serverCredentials(config) ?? o.credentials,
      onLoadPackageDefinition: (pkg, server) => {
        tolerateMalformed(pkg as Record<string, unknown>);
        onLoad?.(pkg, server);
      },
    } as GrpcOptions['options'],
  };
}

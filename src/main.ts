// The orchestrator: Nest hybrid app = public gRPC API (noisesearch.search.v1.Search + grpc.health.v1)
// + HTTP (GET /health). Run: `npm start`.
import 'reflect-metadata';
import { INestApplication, LogLevel } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { MicroserviceOptions } from '@nestjs/microservices';
import { HealthImplementation } from 'grpc-health-check';
import { AppModule } from './app.module';
import { AppConfig, describeConfig, loadConfig } from './config/config';
import { grpcOptions, resolveAddress, SEARCH_SERVICE } from './api/grpc-options';
import { GrpcCallStats, withAccessControl } from './auth/grpc-auth';
import { registerLocalToken, TokenAuthority } from './auth/tokens';
import { setupOpenApi } from './admin/openapi';

export interface Orchestrator {
  app: INestApplication;
  /** The public gRPC address actually bound. */
  grpcAddress: string;
  /** The token clients of this process send (the generated one, or the first configured admin token). */
  token?: string;
  /** http://host:port of the admin endpoint, when it listens. */
  httpUrl?: string;
  close(): Promise<void>;
}

const LEVELS: LogLevel[] = ['fatal', 'error', 'warn', 'log', 'debug', 'verbose'];

/** Builds and starts the orchestrator: workers ready first, then the gRPC server, then HTTP. */
export async function startOrchestrator(config: AppConfig, opts: { logger?: false | LogLevel[] } = {}): Promise<Orchestrator> {
  const logger = opts.logger ?? LEVELS.slice(0, LEVELS.indexOf(config.logLevel) + 1);
  const app = await NestFactory.create(AppModule.forRoot(config), { logger, abortOnError: false });
  app.enableShutdownHooks();
  const grpcAddress = await resolveAddress(config.grpcAddress);
  const health = new HealthImplementation({ '': 'NOT_SERVING', [SEARCH_SERVICE]: 'NOT_SERVING' });
  const auth = app.get(TokenAuthority);
  const token = auth.generatedToken ?? (config.tokens.find((t) => t.role === 'admin') ?? config.tokens[0])?.token;
  app.connectMicroservice<MicroserviceOptions>(withAccessControl(grpcOptions(config, grpcAddress, health), auth, config, app.get(GrpcCallStats)), { inheritAppConfig: true });
  setupOpenApi(app);
  try {
    await app.init(); // spawns / connects the workers and waits until they serve
    await app.startAllMicroservices();
    if (config.httpPort > 0) await app.listen(config.httpPort, config.httpHost);
  } catch (e) {
    await app.close().catch(() => undefined);
    throw e;
  }
  health.setStatus('', 'SERVING');
  health.setStatus(SEARCH_SERVICE, 'SERVING');
  const httpUrl = config.httpPort > 0 ? `http://${config.httpHost.includes(':') ? `[${config.httpHost}]` : config.httpHost}:${config.httpPort}` : undefined;
  registerLocalToken(grpcAddress, token);
  if (httpUrl) registerLocalToken(httpUrl, token);
  let closed = false;
  return {
    app,
    grpcAddress,
    token: auth.enabled ? token : undefined,
    httpUrl,
    close: async () => {
      if (closed) return;
      closed = true;
      registerLocalToken(grpcAddress, undefined);
      if (httpUrl) registerLocalToken(httpUrl, undefined);
      health.setStatus('', 'NOT_SERVING');
      health.setStatus(SEARCH_SERVICE, 'NOT_SERVING');
      await app.close();
    },
  };
}

async function main(): Promise<void> {
  if (process.argv.includes('--help')) {
    process.stdout.write(`noisesearch orchestrator\n\nEnvironment:\n${describeConfig()}\n`);
    return;
  }
  const config = loadConfig();
  const orch = await startOrchestrator(config);
  const http = config.httpPort > 0 ? `, HTTP on http://${config.httpHost}:${config.httpPort}/health` : '';
  process.stdout.write(`noisesearch orchestrator: gRPC on ${orch.grpcAddress}${http}\n`);
  const generated = orch.app.get(TokenAuthority).generatedToken;
  if (generated) {
    process.stdout.write(`admin token (random, for this process only; set NOISESEARCH_TOKENS to choose tokens): ${generated}\n`);
    if (orch.httpUrl) process.stdout.write(`dashboard: ${orch.httpUrl}/dashboard?token=${generated}\n`);
  } else if (config.auth === 'off') {
    process.stdout.write('access control is OFF (NOISESEARCH_AUTH=off): anyone who reaches these ports can search and cancel\n');
  }
}

if (require.main === module) {
  main().catch((e) => {
    process.stderr.write(`${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    process.exit(1);
  });
}

// The public gRPC server's options (Nest Transport.GRPC) and the free-port helper.
import * as net from 'node:net';
import * as path from 'node:path';
import type { GrpcOptions } from '@nestjs/microservices';
import { Transport } from '@nestjs/microservices';
import { HealthImplementation } from 'grpc-health-check';
import type { AppConfig } from '../config/config';
import { repoRoot } from '../worker/local-worker';

export const SEARCH_SERVICE = 'noisesearch.search.v1.Search';

/** host:0 -> host:<a free port> (Nest does not report the port it bound). */
export async function resolveAddress(address: string): Promise<string> {
  const m = /^(.*):(\d+)$/.exec(address);
  if (!m || m[2] !== '0') return address;
  const host = m[1].replace(/^\[|\]$/g, '');
  const port = await new Promise<number>((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const p = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(p));
    });
  });
  return `${m[1]}:${port}`;
}

export function grpcOptions(config: AppConfig, url: string, health?: HealthImplementation): GrpcOptions {
  const root = repoRoot();
  return {
    transport: Transport.GRPC,
    options: {
      url,
      package: 'noisesearch.search.v1',
      protoPath: path.join(root, 'proto/noisesearch/search/v1/search.proto'),
      loader: {
        includeDirs: [path.join(root, 'proto')],
        keepCase: false,
        longs: String,
        enums: Number,
        defaults: true,
        oneofs: false,
      },
      maxSendMessageLength: config.maxMessageBytes,
      maxReceiveMessageLength: config.maxMessageBytes,
      onLoadPackageDefinition: (_pkg, server) => {
        health?.addToServer(server as Parameters<HealthImplementation['addToServer']>[0]);
      },
    },
  };
}

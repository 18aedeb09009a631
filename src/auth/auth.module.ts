import { Global, Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { APP_CONFIG, AppConfig } from '../config/config';
import { GrpcCallStats } from './grpc-auth';
import { HttpAuthGuard } from './http-auth.guard';
import { TokenAuthority } from './tokens';

/** One TokenAuthority per app (a generated token lives as long as it), the HTTP guard on every route. */
@Global()
@Module({
  providers: [
    { provide: TokenAuthority, inject: [APP_CONFIG], useFactory: (config: AppConfig) => TokenAuthority.fromConfig(config) },
    GrpcCallStats,
    { provide: APP_GUARD, useClass: HttpAuthGuard },
  ],
  exports: [TokenAuthority, GrpcCallStats],
})
export class AuthModule {}

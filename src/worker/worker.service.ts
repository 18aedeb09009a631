import { Inject, Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '../config/config';
import { WorkerPool } from './worker-pool';

/** Nest lifecycle around the WorkerPool: ready before the app listens, stopped on shutdown. */
@Injectable()
export class WorkerService extends WorkerPool implements OnModuleInit, OnApplicationShutdown {
  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    super(config, new Logger('Worker'));
  }

  async onModuleInit(): Promise<void> {
    await this.start();
  }

  async onApplicationShutdown(): Promise<void> {
    await this.stop();
  }
}

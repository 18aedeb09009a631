import { Inject, Injectable, OnApplicationShutdown } from '@nestjs/common';
import { APP_CONFIG, AppConfig, limitsOf } from '../config/config';
import { WorkerService } from '../worker/worker.service';
import { CoreSearchRunner } from './core-search-runner';
import { JobRegistry } from './job-registry';
import { InMemoryJobStore } from './job-store';

/** The job registry, wired to the real search core and the worker pool. */
@Injectable()
export class JobsService extends JobRegistry implements OnApplicationShutdown {
  constructor(@Inject(APP_CONFIG) config: AppConfig, workers: WorkerService) {
    super(new CoreSearchRunner(workers, limitsOf(config)), {
      maxRunningJobs: config.maxRunningJobs,
      maxJobsKept: config.maxJobsKept,
    }, new InMemoryJobStore());
  }

  async onApplicationShutdown(): Promise<void> {
    await this.close();
  }
}

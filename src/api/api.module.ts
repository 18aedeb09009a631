import { Module } from '@nestjs/common';
import { JobsModule } from '../jobs/jobs.module';
import { WorkerModule } from '../worker/worker.module';
import { HealthController } from './health.controller';
import { SearchController } from './search.controller';

@Module({
  imports: [JobsModule, WorkerModule],
  controllers: [SearchController, HealthController],
})
export class ApiModule {}

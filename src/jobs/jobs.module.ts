import { Module } from '@nestjs/common';
import { WorkerModule } from '../worker/worker.module';
import { JobsService } from './jobs.service';

@Module({
  imports: [WorkerModule],
  providers: [JobsService],
  exports: [JobsService],
})
export class JobsModule {}

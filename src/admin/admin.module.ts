import { Module } from '@nestjs/common';
import { JobsModule } from '../jobs/jobs.module';
import { WorkerModule } from '../worker/worker.module';
import { AdminController, MetricsController } from './admin.controller';
import { AdminService } from './admin.service';
import { DashboardController } from './dashboard.controller';
import { MetricsService } from './metrics.service';
import { PreviewsService } from './previews.service';

/** The admin endpoint: JSON API under /admin, /metrics, the dashboard; OpenAPI at /docs (openapi.ts). */
@Module({
  imports: [JobsModule, WorkerModule],
  controllers: [AdminController, MetricsController, DashboardController],
  providers: [AdminService, MetricsService, PreviewsService],
  exports: [MetricsService],
})
export class AdminModule {}

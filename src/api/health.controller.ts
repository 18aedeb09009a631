import { Controller, Get, HttpException, HttpStatus } from '@nestjs/common';
import { JobsService } from '../jobs/jobs.service';
import { WorkerService } from '../worker/worker.service';

@Controller()
export class HealthController {
  constructor(private readonly workers: WorkerService, private readonly jobs: JobsService) {}

  /** 200 when every worker answers SERVING, 503 otherwise; the body says which. */
  @Get('health')
  async health() {
    const workers = await this.workers.health();
    const ok = workers.length > 0 && workers.every((w) => w.serving);
    const body = { status: ok ? 'ok' : 'degraded', workers, jobs: this.jobs.counts() };
    if (!ok) throw new HttpException(body, HttpStatus.SERVICE_UNAVAILABLE);
    return body;
  }
}

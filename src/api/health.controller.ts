import { Controller, Get, HttpException, HttpStatus, Req } from '@nestjs/common';
import { requestToken, type HttpRequest } from '../auth/http-auth.guard';
import { TokenAuthority } from '../auth/tokens';
import { JobsService } from '../jobs/jobs.service';
import { WorkerService } from '../worker/worker.service';

@Controller()
export class HealthController {
  constructor(private readonly workers: WorkerService, private readonly jobs: JobsService, private readonly auth: TokenAuthority) {}

  /**
   * 200 when every worker answers SERVING, 503 otherwise. Open to everyone: status, worker counts and
   * job counts. The workers' addresses, PIDs and load only with a read token (or in-process, no request).
   */
  @Get('health')
  async health(@Req() req?: HttpRequest) {
    const workers = await this.workers.health();
    const ok = workers.length > 0 && workers.every((w) => w.serving);
    const detailed = !req || this.auth.decide(requestToken(req), 'read').ok;
    const body: { status: string; workersTotal: number; workersServing: number; workers?: typeof workers; jobs: ReturnType<JobsService['counts']> } = {
      status: ok ? 'ok' : 'degraded',
      workersTotal: workers.length,
      workersServing: workers.filter((w) => w.serving).length,
      ...(detailed ? { workers } : {}),
      jobs: this.jobs.counts(),
    };
    if (!ok) throw new HttpException(body, HttpStatus.SERVICE_UNAVAILABLE);
    return body;
  }
}

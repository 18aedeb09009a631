// The admin HTTP API (JSON): jobs (list with filters, detail, cancel, output PNGs by id, live events as
// server-sent events), workers, usage, Prometheus metrics. Every route needs a token (src/auth/):
// `read` for everything here but cancel, which needs `admin`.
import {
  BadRequestException, Controller, Get, Header, HttpCode, HttpException, HttpStatus, NotFoundException, Param, Post,
  Query, Res, Sse,
} from '@nestjs/common';
import {
  ApiBadRequestResponse, ApiBearerAuth, ApiCookieAuth, ApiForbiddenResponse, ApiNotFoundResponse, ApiOkResponse, ApiOperation,
  ApiParam, ApiProduces, ApiQuery, ApiTags, ApiUnauthorizedResponse,
} from '@nestjs/swagger';
import { Observable, interval, map, merge } from 'rxjs';
import { LIST_DEFAULT_LIMIT } from '../api/job-requests';
import { SearchError, bounded } from '../search/errors';
import { BOUNDS } from '../search/resolve';
import { asSearchError } from '../api/public-errors';
import { NeedsAccess, type HttpResponse } from '../auth/http-auth.guard';
import { TOKEN_COOKIE } from '../auth/http-auth.guard';
import { AdminService, STATE_NAMES, eventView, stateName } from './admin.service';
import { MetricsService } from './metrics.service';

interface SseMessage {
  type?: string;
  data: string | object;
}

type PngResponse = HttpResponse & { type(t: string): { send(b: Buffer): void } };

const ID = /^[A-Za-z0-9._-]{1,128}$/;

/** A query parameter given at most once, at most 256 characters (express makes `?a=1&a=2` an array). */
function one(name: string, v: unknown): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new BadRequestException(`${name}: give it once, as a plain value`);
  if (v.length > 256) throw new BadRequestException(`${name}: at most 256 characters`);
  return v;
}

/** Registry errors as HTTP statuses (NOT_FOUND -> 404, bad arguments -> 400, the rest -> 500). */
export function httpError(e: unknown): Error {
  if (e instanceof HttpException) return e;
  if (e instanceof SearchError) {
    if (e.code === 'NOT_FOUND') return new NotFoundException(e.message);
    if (e.code === 'INVALID_ARGUMENT' || e.code === 'FAILED_PRECONDITION') return new BadRequestException(e.message);
  }
  if (e instanceof RangeError) return new BadRequestException(bounded(e.message, 300));
  // Anything else (e.g. a worker's fault) with its public message only: no addresses or internal detail.
  const s = asSearchError(e);
  return new HttpException(s.message, s.code === 'UNAVAILABLE' ? HttpStatus.SERVICE_UNAVAILABLE : HttpStatus.INTERNAL_SERVER_ERROR);
}

function checkId(id: string): string {
  if (!ID.test(id)) throw new BadRequestException('id: expected 1-128 characters of A-Z a-z 0-9 . _ -');
  return id;
}

@ApiTags('admin')
@ApiBearerAuth()
@ApiCookieAuth(TOKEN_COOKIE)
@ApiUnauthorizedResponse({ description: 'no token, or a wrong one' })
@ApiOkResponse({ description: 'the answer' })
@ApiBadRequestResponse({ description: 'a malformed id, filter or file name (the message names it)' })
@Controller('admin')
export class AdminController {
  constructor(private readonly admin: AdminService) {}

  @Get('jobs')
  @ApiOperation({ summary: 'Jobs, newest first, with filters' })
  @ApiQuery({ name: 'state', required: false, enum: STATE_NAMES })
  @ApiQuery({ name: 'client', required: false, description: 'client_id of the request' })
  @ApiQuery({ name: 'algorithm', required: false, enum: ['random', 'zero_order', 'paths'] })
  @ApiQuery({ name: 'model', required: false })
  @ApiQuery({ name: 'limit', required: false, description: `jobs to return, 1-${BOUNDS.listLimit} (out of range: 400)`, schema: { type: 'integer', minimum: 1, maximum: BOUNDS.listLimit, default: LIST_DEFAULT_LIMIT } })
  listJobs(
    @Query('state') state?: string, @Query('client') client?: string, @Query('algorithm') algorithm?: string,
    @Query('model') model?: string, @Query('limit') limit?: string,
  ) {
    [state, client, algorithm, model, limit] = [one('state', state), one('client', client), one('algorithm', algorithm), one('model', model), one('limit', limit)];
    if (limit !== undefined && !/^\d{1,6}$/.test(limit)) throw new BadRequestException(`limit: expected an integer in [1, ${BOUNDS.listLimit}]`);
    try {
      return this.admin.listJobs({ state, client, algorithm, model, limit: limit === undefined ? undefined : Number(limit) });
    } catch (e) {
      throw httpError(e);
    }
  }

  @Get('jobs/:id')
  @ApiNotFoundResponse({ description: 'no such job (or output)' })
  @ApiOperation({ summary: 'One job: request, plan, progress, result (images as URLs)' })
  @ApiParam({ name: 'id' })
  job(@Param('id') id: string) {
    try {
      return this.admin.jobDetail(checkId(id));
    } catch (e) {
      throw httpError(e);
    }
  }

  @Post('jobs/:id/cancel')
  @ApiNotFoundResponse({ description: 'no such job (or output)' })
  @HttpCode(200)
  @NeedsAccess('admin')
  @ApiOperation({ summary: 'Cancel a queued or running job (admin token)' })
  @ApiForbiddenResponse({ description: 'a read-only token' })
  async cancel(@Param('id') id: string) {
    try {
      await this.admin.jobs.cancel(checkId(id));
      return this.admin.jobDetail(id);
    } catch (e) {
      throw httpError(e);
    }
  }

  @Get('jobs/:id/outputs/:file')
  @ApiNotFoundResponse({ description: 'no such job (or output)' })
  @ApiOperation({ summary: 'Output PNG of a finished job, by job id and output index (e.g. 0.png)' })
  @ApiProduces('image/png')
  output(@Param('id') id: string, @Param('file') file: string, @Res() res: PngResponse) {
    const m = /^(\d{1,4})\.png$/.exec(file);
    if (!m) throw new BadRequestException('file: expected <index>.png');
    let png: Buffer | undefined;
    try {
      png = this.admin.outputPng(checkId(id), Number(m[1]));
    } catch (e) {
      throw httpError(e);
    }
    if (!png) throw new NotFoundException(`job ${id} has no output ${m[1]} (yet)`);
    res.setHeader('Cache-Control', 'private, max-age=3600');
    res.type('image/png').send(png);
  }

  @Sse('jobs/:id/events')
  @ApiNotFoundResponse({ description: 'no such job (or output)' })
  @ApiOperation({ summary: 'Server-sent events of a job: plan, round..., result, then end (past events replayed first)' })
  @ApiProduces('text/event-stream')
  events(@Param('id') id: string): Observable<SseMessage> {
    try {
      this.admin.jobs.get(checkId(id));
    } catch (e) {
      throw httpError(e);
    }
    const end = (error?: string): SseMessage => {
      let state = 'unknown';
      try {
        state = stateName(this.admin.jobs.get(id).state);
      } catch { /* forgotten */ }
      return { type: 'end', data: { state, error } };
    };
    const job$ = new Observable<SseMessage>((sub) => {
      const s = this.admin.jobs.watch(id).subscribe({
        next: (e) => {
          const v = eventView(e);
          if (v) sub.next({ type: v.type, data: v.data as object });
        },
        error: (e) => { sub.next(end(e instanceof Error ? e.message : String(e))); sub.complete(); },
        complete: () => { sub.next(end()); sub.complete(); },
      });
      return () => s.unsubscribe();
    });
    // A comment-like ping every 15 s keeps idle connections (and proxies) open during long rounds.
    const ping$ = interval(15_000).pipe(map((): SseMessage => ({ type: 'ping', data: {} })));
    return new Observable<SseMessage>((sub) => {
      const inner = merge(job$, ping$).subscribe({
        next: (m) => {
          sub.next(m);
          if (m.type === 'end') sub.complete();
        },
        error: (e) => sub.error(e),
      });
      return () => inner.unsubscribe();
    });
  }

  @Get('workers')
  @ApiOperation({ summary: 'Workers: health, models, verifiers, load (calls in flight, leases), tensor memory' })
  workers() {
    return this.admin.workerViews();
  }

  @Get('usage')
  @ApiOperation({ summary: 'NFEs per job, per client and in total (jobs the registry keeps)' })
  @ApiQuery({ name: 'client', required: false })
  usage(@Query('client') client?: string) {
    return this.admin.usage(one('client', client));
  }
}

@ApiTags('metrics')
@ApiBearerAuth()
@ApiUnauthorizedResponse({ description: 'no token, or a wrong one' })
@Controller()
export class MetricsController {
  constructor(private readonly service: MetricsService) {}

  @Get('metrics')
  @Header('Content-Type', 'text/plain; version=0.0.4; charset=utf-8')
  @ApiOperation({ summary: 'Prometheus metrics (text exposition format)' })
  @ApiOkResponse({ description: 'noisesearch_jobs, noisesearch_nfes_total, noisesearch_worker_*, noisesearch_grpc_requests_total, process metrics' })
  metrics(): Promise<string> {
    return this.service.text();
  }
}

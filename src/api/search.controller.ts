// The public noisesearch.search.v1.Search service. Thin: normalise the request, call the registry.
import { Controller, Inject, UseFilters } from '@nestjs/common';
import { GrpcMethod } from '@nestjs/microservices';
import { Observable } from 'rxjs';
import {
  CancelJobRequest, GetJobRequest, Job, ListJobsRequest, ListJobsResponse, Plan, SearchEvent, SearchRequest,
  WatchJobRequest,
} from '../gen/noisesearch/search/v1/search';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { JobsService } from '../jobs/jobs.service';
import { GrpcErrorFilter } from './grpc-errors';
import { checkJobId, checkList, fitListAnswer } from './job-requests';

/** proto-loader objects (null for unset messages) -> ts-proto shapes (undefined), as the core expects. */
export function normalizeRequest(raw: unknown): SearchRequest {
  return SearchRequest.fromPartial((raw ?? {}) as SearchRequest);
}

@Controller()
@UseFilters(GrpcErrorFilter)
export class SearchController {
  constructor(private readonly jobs: JobsService, @Inject(APP_CONFIG) private readonly config: AppConfig) {}

  @GrpcMethod('Search', 'Search')
  search(request: SearchRequest): Observable<SearchEvent> {
    return this.jobs.search(normalizeRequest(request));
  }

  @GrpcMethod('Search', 'PlanSearch')
  planSearch(request: SearchRequest): Plan {
    return this.jobs.plan(normalizeRequest(request));
  }

  @GrpcMethod('Search', 'Submit')
  submit(request: SearchRequest): Job {
    return this.jobs.submit(normalizeRequest(request));
  }

  @GrpcMethod('Search', 'Get')
  get(request: GetJobRequest): Job {
    return this.jobs.get(checkJobId(request.id));
  }

  @GrpcMethod('Search', 'Watch')
  watch(request: WatchJobRequest): Observable<SearchEvent> {
    return this.jobs.watch(checkJobId(request.id));
  }

  @GrpcMethod('Search', 'Cancel')
  cancel(request: CancelJobRequest): Promise<Job> {
    return this.jobs.cancel(checkJobId(request.id));
  }

  @GrpcMethod('Search', 'List')
  list(request: ListJobsRequest): ListJobsResponse {
    const { state, limit } = checkList(request.state, request.limit);
    return { jobs: fitListAnswer(this.jobs.list(state, limit), this.config.maxMessageBytes) };
  }
}

// The public noisesearch.search.v1.Search service. Thin: normalise the request, call the registry.
import { Controller, UseFilters } from '@nestjs/common';
import { GrpcMethod } from '@nestjs/microservices';
import { Observable } from 'rxjs';
import {
  CancelJobRequest, GetJobRequest, Job, ListJobsRequest, ListJobsResponse, Plan, SearchEvent, SearchRequest,
  WatchJobRequest,
} from '../gen/noisesearch/search/v1/search';
import { JobsService } from '../jobs/jobs.service';
import { GrpcErrorFilter } from './grpc-errors';

/** proto-loader objects (null for unset messages) -> ts-proto shapes (undefined), as the core expects. */
export function normalizeRequest(raw: unknown): SearchRequest {
  return SearchRequest.fromPartial((raw ?? {}) as SearchRequest);
}

@Controller()
@UseFilters(GrpcErrorFilter)
export class SearchController {
  constructor(private readonly jobs: JobsService) {}

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
    return this.jobs.get(request.id);
  }

  @GrpcMethod('Search', 'Watch')
  watch(request: WatchJobRequest): Observable<SearchEvent> {
    return this.jobs.watch(request.id);
  }

  @GrpcMethod('Search', 'Cancel')
  cancel(request: CancelJobRequest): Promise<Job> {
    return this.jobs.cancel(request.id);
  }

  @GrpcMethod('Search', 'List')
  list(request: ListJobsRequest): ListJobsResponse {
    return { jobs: this.jobs.list(request.state, request.limit) };
  }
}

// Candidate thumbnails for the dashboard: decoded on the worker while each round's kept candidates
// were still there (src/search/previews.ts), committed with the job (job_previews) and served from the
// job store. Nothing is rebuilt: serving a thumbnail costs no worker call. Candidates are named by job
// id and candidate id only (no path reaches a file).
import { Injectable } from '@nestjs/common';
import { JobsService } from '../jobs/jobs.service';

@Injectable()
export class PreviewsService {
  /** Previews served since start (a metric). */
  served = 0;

  constructor(private readonly jobs: JobsService) {}

  /** PNG of a kept candidate, or undefined when the job has no such preview (NOT_FOUND for no such job). */
  png(jobId: string, candidateId: string): Buffer | undefined {
    this.jobs.get(jobId);
    const png = this.jobs.preview(jobId, candidateId);
    if (png) this.served++;
    return png;
  }
}

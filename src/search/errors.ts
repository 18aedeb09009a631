// The one error type of the search core; the service layer maps `code` onto gRPC status codes.
export type SearchErrorCode =
  | 'INVALID_ARGUMENT'
  | 'RESOURCE_EXHAUSTED'
  | 'NOT_FOUND'
  | 'CANCELLED'
  | 'FAILED_PRECONDITION'
  | 'INTERNAL';

export class SearchError extends Error {
  constructor(
    readonly code: SearchErrorCode,
    message: string,
    /** The request field at fault, in proto (snake_case) spelling, e.g. `paths.delta_backward`. */
    readonly field?: string,
  ) {
    super(message);
    this.name = 'SearchError';
  }
}

/** INVALID_ARGUMENT whose message starts with the field it names. */
export function invalid(field: string, problem: string): SearchError {
  return new SearchError('INVALID_ARGUMENT', `${field} ${problem}`, field);
}

export function cancelled(): SearchError {
  return new SearchError('CANCELLED', 'search cancelled');
}

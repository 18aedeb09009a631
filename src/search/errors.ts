// The one error vocabulary: every error a client can see is a SearchError whose `code` is a gRPC
// status name; src/api/grpc-errors.ts is the one mapping onto gRPC statuses (and the one place that
// turns any other error, e.g. a worker's, into a SearchError with a public message).
export type SearchErrorCode =
  | 'INVALID_ARGUMENT'
  | 'RESOURCE_EXHAUSTED'
  | 'NOT_FOUND'
  | 'CANCELLED'
  | 'FAILED_PRECONDITION'
  | 'UNAVAILABLE'
  | 'DEADLINE_EXCEEDED'
  | 'INTERNAL';

export const SEARCH_ERROR_CODES: readonly SearchErrorCode[] = [
  'INVALID_ARGUMENT', 'RESOURCE_EXHAUSTED', 'NOT_FOUND', 'CANCELLED', 'FAILED_PRECONDITION', 'UNAVAILABLE',
  'DEADLINE_EXCEEDED', 'INTERNAL',
];

export function isSearchErrorCode(code: string): code is SearchErrorCode {
  return (SEARCH_ERROR_CODES as readonly string[]).includes(code);
}

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

/** Longest echo of a client's value inside an error message (characters). */
export const ECHO_MAX_CHARS = 64;

/**
 * A client's value as error messages echo it: strings JSON-quoted, cut to ECHO_MAX_CHARS with the
 * full length said (a 50 MB name must never come back as a 50 MB message).
 */
export function echo(value: unknown, max = ECHO_MAX_CHARS): string {
  const s = typeof value === 'string' ? value : String(value);
  if (s.length <= max) return typeof value === 'string' ? JSON.stringify(s) : s;
  const cut = JSON.stringify(s.slice(0, max));
  return `${cut.slice(0, -1)}…" (${s.length} characters)`;
}

/** Any message cut to a bounded length (for texts that may carry echoed values). */
export function bounded(message: string, max = 1024): string {
  return message.length <= max ? message : `${message.slice(0, max)}… (${message.length} characters)`;
}

/** INVALID_ARGUMENT whose message starts with the field it names. */
export function invalid(field: string, problem: string): SearchError {
  return new SearchError('INVALID_ARGUMENT', bounded(`${field} ${problem}`), field);
}

export function cancelled(): SearchError {
  return new SearchError('CANCELLED', 'search cancelled');
}

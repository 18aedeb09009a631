// Access control of the HTTP side (admin API, metrics, docs, dashboard data). Deny by default: every
// HTTP route needs a `read` token unless it is marked @Open() (or is GET /health); @NeedsAccess('admin')
// marks the mutating ones (403 for a read-only token). gRPC handlers are checked by grpc-auth.ts.
// The token comes from `Authorization: Bearer <token>` or the dashboard's cookie (set by GET /dashboard?token=).
import {
  CanActivate, ExecutionContext, ForbiddenException, Injectable, SetMetadata, UnauthorizedException,
} from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { Access, TokenAuthority, bearerToken } from './tokens';

/** The parts of express's request and response used here (no @types/express in this project). */
export interface HttpRequest {
  path: string;
  headers: Record<string, string | string[] | undefined> & { authorization?: string; cookie?: string };
}
export interface HttpResponse {
  setHeader(name: string, value: string): unknown;
  status(code: number): HttpResponse;
  json(body: unknown): unknown;
}
type NextFunction = () => void;

export const ACCESS_KEY = 'noisesearch:access';
export const TOKEN_COOKIE = 'noisesearch_token';
/** Routes of other modules that stay open. */
export const OPEN_PATHS: ReadonlySet<string> = new Set(['/health']);

/** What a route needs; 'open' = no token. */
export const NeedsAccess = (access: Access | 'open') => SetMetadata(ACCESS_KEY, access);
export const Open = () => NeedsAccess('open');

export function cookieValue(header: string | undefined, name: string): string {
  for (const part of (header ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) {
      try {
        return decodeURIComponent(part.slice(i + 1).trim());
      } catch {
        return '';
      }
    }
  }
  return '';
}

/** The token of an HTTP request: the bearer header first, then the dashboard cookie. */
export function requestToken(req: Pick<HttpRequest, 'headers'>): string {
  return bearerToken(req.headers.authorization) || cookieValue(req.headers.cookie as string | undefined, TOKEN_COOKIE);
}

function refuse(auth: TokenAuthority, token: string, access: Access, res: HttpResponse): void {
  const d = auth.decide(token, access);
  if (d.ok) return;
  if (d.status === 'forbidden') throw new ForbiddenException(d.message);
  res.setHeader('WWW-Authenticate', 'Bearer realm="noisesearch"');
  throw new UnauthorizedException(d.message);
}

@Injectable()
export class HttpAuthGuard implements CanActivate {
  constructor(private readonly auth: TokenAuthority, private readonly reflector: Reflector) {}

  canActivate(context: ExecutionContext): boolean {
    if (context.getType() !== 'http') return true; // gRPC: the server interceptor decided already
    const req = context.switchToHttp().getRequest<HttpRequest>();
    const access = this.reflector.getAllAndOverride<Access | 'open' | undefined>(ACCESS_KEY, [context.getHandler(), context.getClass()]) ?? 'read';
    if (access === 'open' || OPEN_PATHS.has(req.path)) return true;
    refuse(this.auth, requestToken(req), access, context.switchToHttp().getResponse<HttpResponse>());
    return true;
  }
}

/** The same check as express middleware, for routes Nest does not own (the OpenAPI pages). */
export function httpAuthMiddleware(auth: TokenAuthority, access: Access = 'read') {
  return (req: HttpRequest, res: HttpResponse, next: NextFunction): void => {
    const d = auth.decide(requestToken(req), access);
    if (d.ok) return next();
    const status = d.status === 'forbidden' ? 403 : 401;
    if (status === 401) res.setHeader('WWW-Authenticate', 'Bearer realm="noisesearch"');
    res.status(status).json({ statusCode: status, message: d.message, error: status === 401 ? 'Unauthorized' : 'Forbidden' });
  };
}

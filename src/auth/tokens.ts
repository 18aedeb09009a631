// Bearer tokens and their roles. No framework imports: the gRPC interceptor, the HTTP guard and the
// clients of this process share one TokenAuthority.
//
//   NOISESEARCH_AUTH=on (default), NOISESEARCH_TOKENS=`tok1:admin,tok2:read`  -> those tokens
//   NOISESEARCH_AUTH=on, no tokens  -> one random admin token for this process (printed by `npm start`,
//                                      handed to clients made in the same process: the CLI's in-process run)
//   NOISESEARCH_AUTH=off            -> nothing is checked (trusted networks only)
//
// A presented token is compared with every configured one as SHA-256 digests with
// crypto.timingSafeEqual (equal lengths, no early exit), so neither the length nor a prefix leaks.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { AppConfig, TokenRole, TokenSpec } from '../config/config';

export type { TokenRole };
/** What a call needs: `read` (get, list, watch, plan, metrics, dashboard) or `admin` (search, submit, cancel). */
export type Access = 'read' | 'admin';

export type AuthDecision =
  | { ok: true; role: TokenRole | 'open' }
  | { ok: false; status: 'unauthenticated' | 'forbidden'; message: string };

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/** `Authorization: Bearer <token>` -> token ('' when absent or malformed). */
export function bearerToken(header: string | string[] | undefined): string {
  const h = Array.isArray(header) ? header[0] : header;
  if (!h) return '';
  const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
  return m ? m[1] : '';
}

export class TokenAuthority {
  private readonly digests: { digest: Buffer; role: TokenRole }[];
  /** Set when auth is on and no token was configured: the process's random admin token. */
  readonly generatedToken?: string;

  constructor(readonly enabled: boolean, tokens: TokenSpec[]) {
    let specs = tokens;
    if (enabled && specs.length === 0) {
      this.generatedToken = randomBytes(24).toString('base64url');
      specs = [{ token: this.generatedToken, role: 'admin' }];
    }
    this.digests = specs.map((t) => ({ digest: digest(t.token), role: t.role }));
  }

  static fromConfig(config: Pick<AppConfig, 'auth' | 'tokens'>): TokenAuthority {
    return new TokenAuthority(config.auth !== 'off', config.tokens);
  }

  /** The role of a token, or undefined. Constant time in the token's content and length. */
  roleOf(token: string): TokenRole | undefined {
    const d = digest(token);
    let role: TokenRole | undefined;
    for (const t of this.digests) {
      // Every configured token is compared, whatever matched before.
      if (timingSafeEqual(d, t.digest) && role === undefined) role = t.role;
    }
    return token.length > 0 ? role : undefined;
  }

  /** May `token` make a call that needs `access`? */
  decide(token: string, access: Access): AuthDecision {
    if (!this.enabled) return { ok: true, role: 'open' };
    if (!token) return { ok: false, status: 'unauthenticated', message: 'missing bearer token (authorization: Bearer <token>)' };
    const role = this.roleOf(token);
    if (!role) return { ok: false, status: 'unauthenticated', message: 'invalid bearer token' };
    if (access === 'admin' && role !== 'admin') {
      return { ok: false, status: 'forbidden', message: 'this token is read-only' };
    }
    return { ok: true, role };
  }
}

// ---- tokens known to this process, for its own clients (the CLI's in-process orchestrator, tests) ----

const localTokens = new Map<string, string>();

/** Remembers the token a client of this process should send to `address` (a gRPC host:port or an HTTP origin). */
export function registerLocalToken(address: string, token: string | undefined): void {
  if (token) localTokens.set(address, token);
  else localTokens.delete(address);
}

/** The token for `address`: NOISESEARCH_TOKEN if set, else one registered by an orchestrator of this process. */
export function clientToken(address: string): string | undefined {
  return process.env.NOISESEARCH_TOKEN || localTokens.get(address);
}

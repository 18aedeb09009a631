import { ConfigError, loadConfig } from '../config/config';
import { bearerToken, clientToken, registerLocalToken, TokenAuthority } from './tokens';
import { cookieValue, requestToken } from './http-auth.guard';
import { GRPC_ACCESS, tolerateMalformed } from './grpc-auth';

const A = 'admin-token-0123456789';
const R = 'read-token-0123456789ab';

describe('NOISESEARCH_TOKENS / NOISESEARCH_AUTH / TLS config', () => {
  it('parses tokens and roles (no role = admin) and names the variable of a bad one', () => {
    expect(loadConfig({ NOISESEARCH_TOKENS: `${A}:admin, ${R}:read,${A}x` }).tokens).toEqual([
      { token: A, role: 'admin' }, { token: R, role: 'read' }, { token: `${A}x`, role: 'admin' }]);
    expect(() => loadConfig({ NOISESEARCH_TOKENS: `${A}:root` })).toThrow(/NOISESEARCH_TOKENS.*admin or read/);
    expect(() => loadConfig({ NOISESEARCH_TOKENS: 'short:admin' })).toThrow(ConfigError);
    expect(() => loadConfig({ NOISESEARCH_AUTH: 'maybe' })).toThrow(/NOISESEARCH_AUTH/);
    expect(loadConfig({}).auth).toBe('on');
    expect(() => loadConfig({ NOISESEARCH_TLS_CERT: '/c.pem' })).toThrow(/NOISESEARCH_TLS_KEY/);
    expect(() => loadConfig({ NOISESEARCH_TLS_CLIENT_CA: '/ca.pem' })).toThrow(/NOISESEARCH_TLS_CLIENT_CA/);
  });
});

describe('TokenAuthority', () => {
  const auth = new TokenAuthority(true, [{ token: A, role: 'admin' }, { token: R, role: 'read' }]);

  it('knows each token and its role, nothing else', () => {
    expect(auth.roleOf(A)).toBe('admin');
    expect(auth.roleOf(R)).toBe('read');
    for (const t of ['', A.slice(0, -1), `${A} `, A.toUpperCase(), `${A}${A}`]) expect(auth.roleOf(t)).toBeUndefined();
  });

  it('decides: missing / wrong -> unauthenticated, read on admin -> forbidden', () => {
    expect(auth.decide('', 'read')).toMatchObject({ ok: false, status: 'unauthenticated' });
    expect(auth.decide('nope', 'read')).toMatchObject({ ok: false, status: 'unauthenticated' });
    expect(auth.decide(R, 'admin')).toMatchObject({ ok: false, status: 'forbidden' });
    expect(auth.decide(R, 'read')).toEqual({ ok: true, role: 'read' });
    expect(auth.decide(A, 'admin')).toEqual({ ok: true, role: 'admin' });
  });

  it('no tokens: one random admin token; auth off: everything open', () => {
    const gen = new TokenAuthority(true, []);
    expect(gen.generatedToken).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(gen.decide(gen.generatedToken!, 'admin').ok).toBe(true);
    expect(new TokenAuthority(true, []).generatedToken).not.toBe(gen.generatedToken);
    const off = new TokenAuthority(false, []);
    expect(off.generatedToken).toBeUndefined();
    expect(off.decide('', 'admin')).toEqual({ ok: true, role: 'open' });
  });

  it('reads bearer headers and the dashboard cookie', () => {
    expect(bearerToken(`Bearer ${A}`)).toBe(A);
    expect(bearerToken(`bearer   ${A} `)).toBe(A);
    expect(bearerToken(`Basic ${A}`)).toBe('');
    expect(bearerToken(undefined)).toBe('');
    expect(cookieValue(`a=1; noisesearch_token=${R}; b=2`, 'noisesearch_token')).toBe(R);
    expect(requestToken({ headers: { cookie: `noisesearch_token=${R}` } })).toBe(R);
    expect(requestToken({ headers: { authorization: `Bearer ${A}`, cookie: `noisesearch_token=${R}` } })).toBe(A);
  });

  it('hands registered tokens to clients of this process, NOISESEARCH_TOKEN first', () => {
    registerLocalToken('127.0.0.1:1', A);
    expect(clientToken('127.0.0.1:1')).toBe(process.env.NOISESEARCH_TOKEN || A);
    registerLocalToken('127.0.0.1:1', undefined);
    expect(clientToken('127.0.0.1:1')).toBe(process.env.NOISESEARCH_TOKEN || undefined);
  });
});

describe('gRPC access table and decoder wrapper', () => {
  it('mutating calls need admin, the rest read', () => {
    expect(Object.entries(GRPC_ACCESS).filter(([, a]) => a === 'admin').map(([m]) => m.split('/').pop()).sort()).toEqual(['Cancel', 'Search', 'Submit']);
  });

  it('turns a decoder error into a marker instead of a throw', () => {
    const def: Record<string, unknown> = {
      'x.Svc': { M: { requestDeserialize: () => { throw new Error('bad wire type'); } } },
      'x.Msg': { format: 'Protocol Buffer 3 DescriptorProto' },
    };
    tolerateMalformed(def);
    const out = (def['x.Svc'] as any).M.requestDeserialize(Buffer.alloc(1));
    expect(Object.getOwnPropertySymbols(out).length).toBe(1);
  });
});

// The dashboard: one static page (src/admin/static: HTML, vanilla JS, CSS; no CDN, no framework) that
// reads the admin API with the cookie it was given. GET /dashboard?token=T checks T and sets it as an
// HttpOnly, SameSite=Strict cookie, then redirects to /dashboard (the token leaves the address bar); a
// read-only token is enough to watch (cancelling needs an admin token).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BadRequestException, Controller, Get, NotFoundException, Param, Query, Req, Res } from '@nestjs/common';
import {
  ApiBadRequestResponse, ApiBearerAuth, ApiExcludeEndpoint, ApiNotFoundResponse, ApiOkResponse, ApiOperation, ApiProduces, ApiTags,
  ApiUnauthorizedResponse,
} from '@nestjs/swagger';
import { repoRoot } from '../worker/local-worker';
import { HttpResponse, Open, TOKEN_COOKIE } from '../auth/http-auth.guard';
import { TokenAuthority } from '../auth/tokens';
import { httpError } from './admin.controller';
import { PreviewsService } from './previews.service';

/** The only files served: a fixed name -> file map (no path from a request reaches the file system). */
const ASSETS: Record<string, { file: string; type: string }> = {
  'dashboard.js': { file: 'dashboard.js', type: 'text/javascript; charset=utf-8' },
  'dashboard.css': { file: 'dashboard.css', type: 'text/css; charset=utf-8' },
};
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

export function staticDir(): string {
  return path.join(repoRoot(), 'src/admin/static');
}

type Res = HttpResponse & {
  type(t: string): Res;
  send(b: string | Buffer): void;
  redirect(status: number, url: string): void;
  cookie?: unknown;
};

@ApiTags('dashboard')
@Controller()
export class DashboardController {
  private readonly files = new Map<string, Buffer>();

  constructor(private readonly auth: TokenAuthority, private readonly previews: PreviewsService) {
    for (const name of ['dashboard.html', ...Object.keys(ASSETS)]) this.files.set(name, fs.readFileSync(path.join(staticDir(), name)));
  }

  @Get('dashboard')
  @Open()
  @ApiExcludeEndpoint()
  page(@Query('token') token: string | undefined, @Req() req: { secure?: boolean }, @Res() res: Res) {
    if (token !== undefined) {
      const d = this.auth.decide(token, 'read');
      if (!d.ok) {
        res.setHeader('Cache-Control', 'no-store');
        res.redirect(303, '/dashboard?denied=1');
        return;
      }
      const secure = req.secure ? '; Secure' : '';
      res.setHeader('Set-Cookie', `${TOKEN_COOKIE}=${encodeURIComponent(token)}; HttpOnly; SameSite=Strict; Path=/${secure}`);
      res.redirect(303, '/dashboard');
      return;
    }
    res.setHeader('Content-Security-Policy', CSP);
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.type('text/html; charset=utf-8').send(this.files.get('dashboard.html')!);
  }

  @Get('dashboard/logout')
  @Open()
  @ApiExcludeEndpoint()
  logout(@Res() res: Res) {
    res.setHeader('Set-Cookie', `${TOKEN_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0`);
    res.redirect(303, '/dashboard');
  }

  @Get('dashboard/static/:name')
  @Open()
  @ApiExcludeEndpoint()
  asset(@Param('name') name: string, @Res() res: Res) {
    const a = Object.prototype.hasOwnProperty.call(ASSETS, name) ? ASSETS[name] : undefined;
    if (!a) throw new NotFoundException();
    res.setHeader('Cache-Control', 'no-cache');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.type(a.type).send(this.files.get(a.file)!);
  }

  /** A kept candidate's thumbnail, decoded when its round ran (needs a read token; no worker call). */
  @Get('admin/jobs/:id/candidates/:file')
  @ApiBearerAuth()
  @ApiOkResponse({ description: 'the PNG' })
  @ApiBadRequestResponse({ description: 'a malformed id or file name' })
  @ApiUnauthorizedResponse({ description: 'no token, or a wrong one' })
  @ApiNotFoundResponse({ description: 'no such job or candidate' })
  @ApiOperation({ summary: "A kept candidate's image (e.g. r0.c3.png), decoded on the worker when its round ran" })
  @ApiProduces('image/png')
  async candidate(@Param('id') id: string, @Param('file') file: string, @Res() res: Res) {
    const m = /^(r\d{1,6}\.c\d{1,7})\.png$/.exec(file);
    if (!m || !/^[A-Za-z0-9._-]{1,128}$/.test(id)) throw new BadRequestException('expected /admin/jobs/<id>/candidates/r<round>.c<index>.png');
    let png: Buffer | undefined;
    try {
      png = this.previews.png(id, m[1]);
    } catch (e) {
      throw httpError(e);
    }
    if (!png) throw new NotFoundException(`job ${id} has no preview of candidate ${m[1]} (only kept candidates have one)`);
    res.setHeader('Cache-Control', 'private, max-age=3600');
    res.type('image/png').send(png);
  }
}

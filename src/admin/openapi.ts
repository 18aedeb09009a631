// OpenAPI documentation of the HTTP side: /docs (Swagger UI, served from the swagger-ui-dist package:
// no CDN) and /docs-json. Both need a read token, like the rest of the admin endpoint.
import type { INestApplication } from '@nestjs/common';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { httpAuthMiddleware } from '../auth/http-auth.guard';
import { TOKEN_COOKIE } from '../auth/http-auth.guard';
import { TokenAuthority } from '../auth/tokens';

export function setupOpenApi(app: INestApplication): void {
  const auth = app.get(TokenAuthority);
  app.use(['/docs', '/docs-json'], httpAuthMiddleware(auth, 'read'));
  const config = new DocumentBuilder()
    .setTitle('noisesearch admin')
    .setDescription('Admin endpoint of the noisesearch orchestrator: jobs, workers, usage (NFEs), metrics, dashboard. '
      + 'The search API itself is gRPC (noisesearch.search.v1.Search, proto/). Every route but GET /health needs '
      + '`Authorization: Bearer <token>` (or the dashboard cookie); cancelling needs an admin token.')
    .setVersion('1')
    .addBearerAuth()
    .addCookieAuth(TOKEN_COOKIE)
    .build();
  const document = SwaggerModule.createDocument(app, config);
  SwaggerModule.setup('docs', app, document, { jsonDocumentUrl: 'docs-json' });
}

# The NestJS orchestrator: public gRPC API (:50051) and the admin endpoint + dashboard (:3000).
# Build from the repository root:  docker build -f docker/orchestrator.Dockerfile -t noisesearch-orchestrator .
# (docker/compose.yaml builds and runs it with the worker.)
ARG NODE_IMAGE=node:20.19.2-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY proto proto
COPY src src
COPY bench bench
COPY scripts scripts
RUN npx tsc -p tsconfig.build.json

FROM ${NODE_IMAGE}
ENV NODE_ENV=production \
    NOISESEARCH_GRPC_ADDRESS=0.0.0.0:50051 \
    NOISESEARCH_HTTP_HOST=0.0.0.0 \
    NOISESEARCH_HTTP_PORT=3000 \
    NOISESEARCH_DB=/data/noisesearch.db
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
# proto/ is read at run time (the gRPC server loads search.proto); the dashboard's static files too.
COPY proto proto
COPY src/admin/static src/admin/static
COPY --from=build /app/dist dist
RUN mkdir -p /data && chown node:node /data
USER node
EXPOSE 50051 3000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s \
  CMD node -e "fetch('http://127.0.0.1:3000/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
CMD ["node", "dist/src/main.js"]

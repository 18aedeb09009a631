// The Kubernetes manifests in deploy/ against the Kubernetes OpenAPI schemas (kubernetes-models ships
// them; nothing is fetched), and against this repository: every NOISESEARCH_* variable they set is one
// the config schema knows, the drain fits in the grace period, the images are the docker/ ones.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { Service } from 'kubernetes-models/v1/Service';
import { Secret } from 'kubernetes-models/v1/Secret';
import { PersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import { CONFIG_SCHEMA, loadConfig } from './config';

const DEPLOY = path.resolve(__dirname, '../../deploy');
const KINDS: Record<string, new (o: any) => { validate(): void }> = {
  'apps/v1/Deployment': Deployment,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'v1/Service': Service,
  'v1/Secret': Secret,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
};

function load(file: string): any[] {
  return parseAllDocuments(fs.readFileSync(path.join(DEPLOY, file), 'utf8')).map((d) => {
    if (d.errors.length > 0) throw new Error(`${file}: ${d.errors[0].message}`);
    return d.toJS();
  });
}

const files = ['orchestrator.yaml', 'worker.yaml', 'secret.example.yaml'];
const objects = files.flatMap((f) => load(f).map((o) => ({ file: f, o })));
const find = (kind: string, name: string) => {
  const hit = objects.find(({ o }) => o.kind === kind && o.metadata?.name === name);
  if (!hit) throw new Error(`no ${kind} ${name} in deploy/`);
  return hit.o;
};
const envOf = (d: any): Record<string, any> => Object.fromEntries(d.spec.template.spec.containers[0].env.map((e: any) => [e.name, e]));

describe('deploy/ manifests', () => {
  it.each(objects.map(({ file, o }) => [`${file}: ${o.kind} ${o.metadata?.name}`, o]))('%s validates against the Kubernetes schema', (_, o) => {
    const ctor = KINDS[`${o.apiVersion}/${o.kind}`];
    expect(ctor).toBeDefined();
    expect(() => new ctor(o).validate()).not.toThrow();
  });

  it('the validator rejects what Kubernetes would (so the test above tests something)', () => {
    const bad = structuredClone(find('Deployment', 'noisesearch-orchestrator'));
    bad.spec.template.spec.containers[0].ports[0].containerPort = 'fifty';
    expect(() => new Deployment(bad).validate()).toThrow(/containerPort/);
    const noSelector = structuredClone(find('PodDisruptionBudget', 'noisesearch-worker'));
    noSelector.spec.maxUnavailable = { nope: 1 };
    expect(() => new PodDisruptionBudget(noSelector).validate()).toThrow();
  });

  it('kustomization.yaml lists every manifest but the example secret', () => {
    const [k] = load('kustomization.yaml');
    expect(k.resources.sort()).toEqual(['orchestrator.yaml', 'worker.yaml']);
    const images = k.images.map((i: any) => i.name).sort();
    const used = objects.filter(({ o }) => o.kind === 'Deployment').map(({ o }) => o.spec.template.spec.containers[0].image).sort();
    expect(used).toEqual(images);
  });

  it('orchestrator: 2+ replicas, gRPC readiness, a grace period longer than the drain, settings the config schema accepts', () => {
    const d = find('Deployment', 'noisesearch-orchestrator');
    expect(d.spec.replicas).toBeGreaterThanOrEqual(2);
    const c = d.spec.template.spec.containers[0];
    expect(c.readinessProbe.grpc.port).toBe(50051);
    expect(c.resources.requests.cpu).toBeDefined();
    const env = envOf(d);
    const drainMs = Number(env.NOISESEARCH_DRAIN_TIMEOUT_MS.value);
    expect(d.spec.template.spec.terminationGracePeriodSeconds * 1000).toBeGreaterThan(drainMs + 10_000);
    const known = new Set(Object.values(CONFIG_SCHEMA).map((s) => s.env).concat(['NOISESEARCH_WORKER_TOKEN']));
    for (const name of Object.keys(env)) if (name.startsWith('NOISESEARCH_')) expect([name, known.has(name)]).toEqual([name, true]);
    // The plain values parse; the secrets are read from the Secret the example shows.
    const plain = Object.fromEntries(Object.values(env).filter((e: any) => 'value' in e).map((e: any) => [e.name, e.value]));
    const secret = find('Secret', 'noisesearch');
    const fromSecret = Object.fromEntries(Object.values(env).filter((e: any) => e.valueFrom).map((e: any) => {
      expect(e.valueFrom.secretKeyRef.name).toBe('noisesearch');
      expect(Object.keys(secret.stringData)).toContain(e.valueFrom.secretKeyRef.key);
      return [e.name, secret.stringData[e.valueFrom.secretKeyRef.key]];
    }));
    expect(fromSecret.NOISESEARCH_DB).toMatch(/^postgres:\/\//);
    expect(fromSecret.NOISESEARCH_QUEUE).toMatch(/^redis:\/\//); // PostgreSQL needs the queue (loadConfig below refuses it alone)
    const cfg = loadConfig({ ...plain, ...fromSecret, NOISESEARCH_TOKENS: 'aaaaaaaaaaaaaaaaaaaa:admin' });
    expect(cfg.drainTimeoutMs).toBe(drainMs);
    expect(cfg.workerDns).toBe('noisesearch-worker:50151');
    expect(cfg.workerAddresses).toEqual([]);
    expect(find('PodDisruptionBudget', 'noisesearch-orchestrator').spec.minAvailable).toBeGreaterThanOrEqual(1);
    // Same ports and user as docker/orchestrator.Dockerfile (the node image's `node` user is uid 1000).
    const dockerfile = fs.readFileSync(path.resolve(DEPLOY, '../docker/orchestrator.Dockerfile'), 'utf8');
    expect(dockerfile).toContain('EXPOSE 50051 3000');
    expect(dockerfile).toMatch(/^USER node$/m);
    expect(d.spec.template.spec.securityContext.runAsUser).toBe(1000);
    expect(c.ports.map((p: any) => p.containerPort)).toEqual([50051, 3000]);
  });

  it('workers: a GPU each, checkpoints read-only, a headless Service the orchestrators resolve', () => {
    const d = find('Deployment', 'noisesearch-worker');
    const c = d.spec.template.spec.containers[0];
    expect(c.resources.limits['nvidia.com/gpu']).toBe(1);
    expect(c.resources.requests['nvidia.com/gpu']).toBe(1);
    expect(c.readinessProbe.grpc.port).toBe(50151);
    const ckpt = c.volumeMounts.find((m: any) => m.mountPath === '/ckpt');
    expect(ckpt.readOnly).toBe(true);
    expect(d.spec.template.spec.volumes.find((v: any) => v.name === ckpt.name).persistentVolumeClaim.readOnly).toBe(true);
    const svc = find('Service', 'noisesearch-worker');
    expect(svc.spec.clusterIP).toBe('None');
    expect(svc.spec.selector).toEqual(d.spec.selector.matchLabels);
    const dns = envOf(find('Deployment', 'noisesearch-orchestrator')).NOISESEARCH_WORKER_DNS.value;
    expect(dns).toBe(`${svc.metadata.name}:${svc.spec.ports[0].port}`);
    expect(find('PodDisruptionBudget', 'noisesearch-worker').spec.maxUnavailable).toBe(1);
    // Same port and entry point as docker/worker.Dockerfile.
    const dockerfile = fs.readFileSync(path.resolve(DEPLOY, '../docker/worker.Dockerfile'), 'utf8');
    expect(dockerfile).toContain('EXPOSE 50151');
    expect(c.args.slice(0, 3)).toEqual(['serve', '--address', '0.0.0.0:50151']);
    expect(dockerfile).toContain('--uid 10001');
    expect(d.spec.template.spec.securityContext.runAsUser).toBe(10001);
  });
});

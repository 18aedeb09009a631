import { ConfigError, describeConfig, loadConfig } from './config';

describe('loadConfig', () => {
  it('fills defaults from an empty environment', () => {
    const c = loadConfig({});
    expect(c.workerAddresses).toEqual([]);
    expect(c.maxMessageBytes).toBe(64 * 1024 * 1024);
    expect(c.python).toBe('python-worker/.venv/bin/python');
    expect(c.maxRunningJobs).toBeGreaterThanOrEqual(1);
  });

  it('parses worker addresses, integers and words', () => {
    const c = loadConfig({
      NOISESEARCH_WORKER_ADDRESSES: ' 127.0.0.1:5000, localhost:6000 ,',
      NOISESEARCH_MAX_RUNNING_JOBS: '4',
      NOISESEARCH_WORKER_ARGS: '--device cpu  --threads 2',
    });
    expect(c.workerAddresses).toEqual(['127.0.0.1:5000', 'localhost:6000']);
    expect(c.maxRunningJobs).toBe(4);
    expect(c.workerExtraArgs).toEqual(['--device', 'cpu', '--threads', '2']);
  });

  it('names the variable of an invalid value', () => {
    expect(() => loadConfig({ NOISESEARCH_MAX_RUNNING_JOBS: 'two' })).toThrow(ConfigError);
    expect(() => loadConfig({ NOISESEARCH_MAX_RUNNING_JOBS: '0' })).toThrow(/NOISESEARCH_MAX_RUNNING_JOBS/);
    expect(() => loadConfig({ NOISESEARCH_WORKER_ADDRESSES: 'nohostport' })).toThrow(/NOISESEARCH_WORKER_ADDRESSES/);
    expect(() => loadConfig({ NOISESEARCH_LOG_LEVEL: 'loud' })).toThrow(/NOISESEARCH_LOG_LEVEL/);
  });

  it('a postgres:// store needs the job queue (redis://), and only a postgres:// store takes one', () => {
    const pg = 'postgres://u@127.0.0.1:5432/db';
    expect(loadConfig({ NOISESEARCH_DB: pg, NOISESEARCH_QUEUE: 'redis://127.0.0.1:6379' }).queue).toBe('redis://127.0.0.1:6379');
    expect(loadConfig({ NOISESEARCH_DB: pg, NOISESEARCH_QUEUE: 'redis://:secret@redis:6379/2' }).queue).toBe('redis://:secret@redis:6379/2');
    expect(() => loadConfig({ NOISESEARCH_DB: pg })).toThrow(/NOISESEARCH_QUEUE: .*needs the job queue/);
    expect(() => loadConfig({ NOISESEARCH_QUEUE: 'redis://127.0.0.1:6379' })).toThrow(/NOISESEARCH_QUEUE: .*postgres/);
    expect(() => loadConfig({ NOISESEARCH_DB: pg, NOISESEARCH_QUEUE: '127.0.0.1:6379' })).toThrow(/NOISESEARCH_QUEUE: expected redis:\/\/host:port/);
    expect(loadConfig({}).queue).toBe('');
  });

  it('lets overrides win and describes every variable', () => {
    expect(loadConfig({ NOISESEARCH_HTTP_PORT: '1234' }, { httpPort: 0 }).httpPort).toBe(0);
    expect(describeConfig()).toContain('NOISESEARCH_WORKER_ADDRESSES');
  });
});

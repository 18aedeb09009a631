// Every orchestrator a test starts from process.env keeps its jobs in memory unless the test
// chooses a database: test files run in parallel and must not resume each other's jobs from the
// service's default file (data/noisesearch.db).
process.env.NOISESEARCH_DB = process.env.NOISESEARCH_TEST_DB || ':memory:';
// A spawned local worker takes a random token per orchestrator; tests that call the worker directly
// (or start second orchestrators on it) share this per-run token instead (test/fuzz.e2e-spec.ts
// proves the random one).
if (!process.env.NOISESEARCH_WORKER_TOKEN) {
  process.env.NOISESEARCH_WORKER_TOKEN = `test-worker-${require('node:crypto').randomBytes(12).toString('hex')}`;
}

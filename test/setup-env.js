// Every orchestrator a test starts from process.env keeps its jobs in memory unless the test
// chooses a database: test files run in parallel and must not resume each other's jobs from the
// service's default file (data/noisesearch.db).
process.env.NOISESEARCH_DB = process.env.NOISESEARCH_TEST_DB || ':memory:';

// Unit tests live beside the code (src/**/*.spec.ts); end-to-end tests against the real worker in test/.
const transform = {
  '^.+\\.ts$': ['@swc/jest', {
    jsc: { parser: { syntax: 'typescript', decorators: true }, transform: { legacyDecorator: true, decoratorMetadata: true }, target: 'es2022' },
  }],
};
// Tests never share the service's default database (data/noisesearch.db): see test/setup-env.js.
const setupFiles = ['<rootDir>/test/setup-env.js'];
module.exports = {
  projects: [
    { displayName: 'unit', testEnvironment: 'node', transform, setupFiles, testMatch: ['<rootDir>/src/**/*.spec.ts'] },
    { displayName: 'e2e', testEnvironment: 'node', transform, setupFiles, testMatch: ['<rootDir>/test/**/*.e2e-spec.ts'] },
  ],
};

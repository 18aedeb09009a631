// Algorithm name (the request's oneof case) -> implementation. A new algorithm: one file, one line.
import { pathsSearch } from './algorithms/paths';
import { randomSearch } from './algorithms/random';
import { zeroOrderSearch } from './algorithms/zero-order';
import type { AlgorithmName } from './resolve';
import type { StepAlgorithm } from './step';

export const ALGORITHMS: Record<AlgorithmName, StepAlgorithm<any>> = { // eslint-disable-line @typescript-eslint/no-explicit-any
  random: randomSearch,
  zero_order: zeroOrderSearch,
  paths: pathsSearch,
};

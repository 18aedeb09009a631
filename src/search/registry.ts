// Algorithm name (the request's oneof case) -> implementation. A new algorithm: one file, one line.
import type { SearchAlgorithm } from './algorithm';
import { pathsSearch } from './algorithms/paths';
import { randomSearch } from './algorithms/random';
import { zeroOrderSearch } from './algorithms/zero-order';
import type { AlgorithmName } from './resolve';

export const ALGORITHMS: Record<AlgorithmName, SearchAlgorithm> = {
  random: randomSearch,
  zero_order: zeroOrderSearch,
  paths: pathsSearch,
};

// Algorithm name (the request's oneof case) -> implementation. A new algorithm: one file, one line.
import { feynmanKacSearch } from './algorithms/feynman-kac';
import { pathsSearch } from './algorithms/paths';
import { randomSearch } from './algorithms/random';
import { rolloverBudgetSearch } from './algorithms/rollover-budget';
import { successiveHalvingSearch } from './algorithms/successive-halving';
import { zeroOrderSearch } from './algorithms/zero-order';
import type { AlgorithmName } from './resolve';
import type { StepAlgorithm } from './step';

export const ALGORITHMS: Record<AlgorithmName, StepAlgorithm<any>> = { // eslint-disable-line @typescript-eslint/no-explicit-any
  random: randomSearch,
  zero_order: zeroOrderSearch,
  paths: pathsSearch,
  successive_halving: successiveHalvingSearch,
  feynman_kac: feynmanKacSearch,
  rollover_budget: rolloverBudgetSearch,
};

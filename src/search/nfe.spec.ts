import { Solver } from '../gen/noisesearch/worker/v1/worker';
import { fullSolveNfes, pathLevels, segmentNfes, segmentSteps, solveNfes, xPredictionNfes } from './nfe';

const heun = (steps: number, guidanceScale = 1) => ({ solver: Solver.SOLVER_HEUN, steps, guidanceScale });
const euler = (steps: number, guidanceScale = 1) => ({ solver: Solver.SOLVER_EULER, steps, guidanceScale });

describe('nfe', () => {
  it('Heun costs 2S - 1 to sigma 0 and 2S elsewhere; Euler S', () => {
    expect(solveNfes(Solver.SOLVER_HEUN, 25, 0, 1)).toBe(49);
    expect(solveNfes(Solver.SOLVER_HEUN, 25, 0.1, 1)).toBe(50);
    expect(solveNfes(Solver.SOLVER_EULER, 30, 0, 1)).toBe(30);
  });

  it('doubles every evaluation under classifier-free guidance other than 1 and 0', () => {
    expect(fullSolveNfes(heun(25, 4))).toBe(98);
    expect(fullSolveNfes(euler(30, 0.5))).toBe(60);
    // Scale 0 is the unconditional pass alone: one NFE per evaluation (issue 12, item 6).
    expect(fullSolveNfes(euler(30, 0))).toBe(30);
    expect(xPredictionNfes(0)).toBe(1);
    expect(xPredictionNfes(1)).toBe(1);
    expect(xPredictionNfes(1.5)).toBe(2);
  });

  it('partial solves keep the step density, at least one step, half rounding up', () => {
    expect(segmentSteps(25, 1, 0.9)).toBe(3); // 2.5 -> 3, despite 25 * (1 - 0.9) = 2.4999...
    expect(segmentSteps(10, 0.95, 0.85)).toBe(1);
    expect(segmentSteps(10, 0.3, 0.29)).toBe(1);
    expect(segmentSteps(10, 0.3, 0.29, 7)).toBe(7);
    expect(segmentNfes(heun(25), 1, 0.9)).toBe(6);
    expect(segmentNfes(heun(25), 0.1, 0)).toBe(5);
  });

  it('path levels fall by df - db per round and land exactly on 0', () => {
    const levels = pathLevels(0.9, 0.05, 0.1);
    expect(levels).toHaveLength(18);
    expect(levels[0]).toEqual({ from: 0.9, up: 0.95, to: 0.85 });
    expect(levels[17]).toEqual({ from: 0.05, up: 0.1, to: 0 });
    expect(pathLevels(0.5, 0.1, 0.4)).toEqual([
      { from: 0.5, up: 0.6, to: 0.2 },
      { from: 0.2, up: 0.3, to: 0 },
    ]);
  });
});

// Each algorithm's best searched score beats the median of as many plain random candidates.
import { request } from '../testing/requests';
import { runOnFake } from '../testing/run';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function randomMedian(count: number, seed: string): Promise<number> {
  const { rounds } = await runOnFake(request({ random: { n: count }, seed: `${seed}1` }));
  return median(rounds[0].candidates.map((c) => c.scores.find((s) => s.verifier === 'supervised')!.score));
}

describe('search beats plain random candidates on the fake', () => {
  const seeds = ['1', '2', '3', '4', '5'];
  it.each(seeds)('seed %s', async (seed) => {
    const random = await runOnFake(request({ random: { n: 12 }, seed }));
    const zo = await runOnFake(request({ zeroOrder: { n: 3, k: 4, acceptNonImproving: false }, seed }));
    const paths = await runOnFake(request({ paths: { n: 2, m: 3, sigmaStart: 0.5, deltaForward: 0.1, deltaBackward: 0.25, backwardSteps: 0 }, seed }));
    const best = (r: typeof random) => r.result.outputs[0].scores.find((s) => s.verifier === 'supervised')!.score;
    expect(best(random)).toBeGreaterThanOrEqual(await randomMedian(12, seed));
    expect(best(zo)).toBeGreaterThanOrEqual(await randomMedian(12, seed));
    const finalCandidates = paths.rounds[paths.rounds.length - 1].candidates.length;
    expect(best(paths)).toBeGreaterThanOrEqual(await randomMedian(finalCandidates, seed));
  });
});

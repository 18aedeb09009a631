import { buildRequest, UsageError } from './search';

describe('search CLI: rollover-budget flags', () => {
  it('--initial-noises sets rollover_budget.initial_noises; absent leaves it unset (= 1)', () => {
    const { request } = buildRequest(['--algorithm', 'rollover-budget', '--nfes', '500', '--initial-noises', '25', '--class', '3']);
    expect(request.rolloverBudget).toEqual({ nfes: '500', proposalsPerCall: 0, eta: undefined, initialNoises: 25 });
    expect(buildRequest(['--algorithm', 'rollover-budget', '--nfes', '200']).request.rolloverBudget!.initialNoises).toBeUndefined();
  });

  it('refuses a non-integer or zero --initial-noises', () => {
    for (const bad of ['0', '1.5', 'many']) {
      expect(() => buildRequest(['--algorithm', 'rollover-budget', '--nfes', '200', '--initial-noises', bad])).toThrow(UsageError);
      expect(() => buildRequest(['--algorithm', 'rollover-budget', '--nfes', '200', '--initial-noises', bad])).toThrow(/--initial-noises/);
    }
  });
});

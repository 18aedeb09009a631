import { NfeLedger } from './budget';
import { SearchError } from './errors';

describe('NfeLedger', () => {
  it('reserves, charges, and refuses past the plan or the budget', () => {
    const l = new NfeLedger(100, 90);
    l.reserve(50, 'a');
    l.charge(50);
    expect(() => l.reserve(41, 'b')).toThrow(SearchError);
    try {
      l.reserve(41, 'b');
    } catch (e) {
      expect((e as SearchError).code).toBe('RESOURCE_EXHAUSTED');
      expect((e as SearchError).message).toContain('41');
    }
    l.reserve(40, 'c');
    l.charge(40);
    expect(l.searchNfes).toBe(90);
  });

  it('the plan bounds an unlimited budget', () => {
    const l = new NfeLedger(10, 0);
    expect(() => l.reserve(11, 'x')).toThrow(/plan/);
  });

  it('a worker report that differs from the reservation is INTERNAL', () => {
    const l = new NfeLedger(100, 0);
    l.reserve(10, 'denoise');
    expect(() => l.charge(11)).toThrow(expect.objectContaining({ code: 'INTERNAL' }));
  });

  it('keeps search, final, verifier calls and recovery apart', () => {
    const l = new NfeLedger(10, 10, 20);
    l.reserve(10, 's');
    l.charge(10);
    l.reserveFinal(20, 'f');
    l.charge(20);
    l.addVerifierCalls(6);
    l.chargeRecovery(3);
    expect([l.searchNfes, l.finalNfes, l.verifierCalls, l.recoveryNfes]).toEqual([10, 20, 6, 3]);
    expect(() => l.reserveFinal(1, 'more')).toThrow(/planned final/);
  });

  it('refuses a charge without a reservation', () => {
    expect(() => new NfeLedger(1, 0).charge(1)).toThrow(/reservation/);
  });
});

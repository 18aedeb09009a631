// The single NFE account of a search. Every worker call that costs NFEs is reserved first (so a
// search can never overspend its plan or budget) and then charged with what the worker reported
// (which must equal the reservation: the account must equal the plan).
import { SearchError } from './errors';

type Phase = 'search' | 'final';

export class NfeLedger {
  searchNfes = 0;
  finalNfes = 0;
  recoveryNfes = 0;
  verifierCalls = 0;
  /** Wall time of the verifier calls (the worker's own measure when it reports one), beside the NFEs. */
  verifierSeconds = 0;
  private pending?: { phase: Phase; expected: number; what: string };

  constructor(
    readonly plannedSearchNfes: number,
    /** 0 = unlimited. */
    readonly budgetNfes: number,
    readonly plannedFinalNfes = Infinity,
  ) {}

  /** Before a search call: refuses a call that would pass the plan or the budget. */
  reserve(expected: number, what: string): void {
    this.open('search', expected, what);
    const after = this.searchNfes + expected;
    if (after > this.plannedSearchNfes || (this.budgetNfes > 0 && after > this.budgetNfes)) {
      this.pending = undefined;
      throw new SearchError(
        'RESOURCE_EXHAUSTED',
        `budget_nfes: ${what} needs ${expected} NFEs with ${this.searchNfes} spent, past the plan (${this.plannedSearchNfes}) or budget (${this.budgetNfes || 'unlimited'})`,
        'budget_nfes',
      );
    }
  }

  /** Before a final-denoise call. */
  reserveFinal(expected: number, what: string): void {
    this.open('final', expected, what);
    if (this.finalNfes + expected > this.plannedFinalNfes) {
      this.pending = undefined;
      throw new SearchError('INTERNAL', `${what} needs ${expected} NFEs, past the planned final ${this.plannedFinalNfes}`);
    }
  }

  /** After the call: what the worker reported. */
  charge(actual: number): void {
    const p = this.pending;
    if (!p) throw new SearchError('INTERNAL', `charged ${actual} NFEs without a reservation`);
    this.pending = undefined;
    if (p.phase === 'search') this.searchNfes += actual;
    else this.finalNfes += actual;
    if (actual !== p.expected) {
      throw new SearchError('INTERNAL', `${p.what}: the worker reported ${actual} NFEs, the plan expected ${p.expected}`);
    }
  }

  /** NFEs spent again after a worker fault; outside the plan, reported apart. */
  chargeRecovery(nfes: number): void {
    this.recoveryNfes += nfes;
  }

  addVerifierCalls(n: number, seconds = 0): void {
    this.verifierCalls += n;
    this.verifierSeconds += seconds;
  }

  private open(phase: Phase, expected: number, what: string): void {
    if (this.pending) throw new SearchError('INTERNAL', `${what}: reserved while ${this.pending.what} is still open`);
    if (!Number.isInteger(expected) || expected < 0) throw new SearchError('INTERNAL', `${what}: bad NFE reservation ${expected}`);
    this.pending = { phase, expected, what };
  }
}

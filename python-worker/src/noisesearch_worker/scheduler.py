"""The step-level scheduler: the rows of every in-flight call share each network's micro-batches.

The shape is vLLM's EngineCore.step: one compute loop, the only place that runs a network, repeats
    schedule (pick a network and the rows of its next micro-batch) -> execute (one forward) -> update
    (hand each call its rows back).
A call never runs a network itself. Its solver (a flat k-diffusion sampler in sampling.py), its x-prediction,
decode or verifier forward submits the rows it needs as a `Work` to the network's `ModelScheduler` and waits
for them; rows of any call, job or client, at any sigma, class, prompt or guidance scale, share a micro-batch,
because every network here takes a per-row time, condition and guidance.

Bits. `exact` (default): every micro-batch of a network has exactly `micro_batch` rows (padded with copies of
its first row), so a row's result depends only on its own inputs and that size, never on which rows share
it (the kernels here compute rows independently at a fixed batch shape: tests/test_scheduler.py checks it).
`fast`: a micro-batch is sized to the rows waiting, rounded up to a power of two (1, 2, 4, ... micro_batch);
the size each row ran at is returned (`Work.sizes`) and recorded in the recipe, and a replay forces it, so a
recipe still rebuilds bit-identically while two runs of one request under different loads may differ in
their last bits.

Fairness: a micro-batch is dealt out a unit at a time round-robin over the waiting calls (processor
sharing), so a large call never starves a small one. A cancelled call's rows leave the queue at once.
"""
from __future__ import annotations

import contextlib
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

EXACT, FAST = "exact", "fast"
# Held by the compute loop while it runs a forward, and by models.run_fixed_batches (tools, scripts and tests
# that run a network outside a worker's loop): one forward at a time on the device. In the worker every network
# (diffusion model, autoencoder, verifier towers, text towers) runs in the loop.
DEVICE_LOCK = threading.RLock()
# The liveness check of the call the current thread serves (set by the engine), for works that give none.
CALL = threading.local()
REPRODUCIBILITY = (EXACT, FAST)


class Cancelled(Exception):
    """The client went away or its deadline passed: stop the work."""


class NonFinite(Exception):
    """A network evaluation gave NaN or infinite values (answered FAILED_PRECONDITION, never a result)."""


def bucket(rows: int, cap: int) -> int:
    """The smallest power of two holding `rows`, at most `cap` (fast mode's micro-batch sizes)."""
    b = 1
    while b < rows and b < cap:
        b *= 2
    return min(b, cap)


_ids = itertools.count()


@dataclass(eq=False)
class Work:
    """One call's rows for one evaluation of one network: inputs row-aligned, `unit` rows kept together."""
    inputs: tuple[torch.Tensor, ...]
    unit: int = 1                       # rows that must share a micro-batch (a guided pair: conditional, null)
    size: int | None = None             # a forced micro-batch size (a fast-mode replay); None: the mode's
    what: str = "network evaluation"    # named in errors
    is_active: Callable[[], bool] | None = None
    id: int = field(default_factory=lambda: next(_ids))
    next_row: int = 0
    out: torch.Tensor | None = None
    sizes: list[int] = field(default_factory=list)  # the micro-batch size each unit ran at
    error: Exception | None = None
    done: threading.Event = field(default_factory=threading.Event)
    finished_rows: int = 0

    @property
    def rows(self) -> int:
        return self.inputs[0].shape[0]


class ComputeLoop:
    """The one thread that runs networks: schedule -> execute -> update, over every ModelScheduler."""

    def __init__(self, poll_s: float = 0.05, linger_s: float = 0.004):
        self.cv = threading.Condition()
        self.schedulers: list[ModelScheduler] = []
        self.poll_s = poll_s
        # How long a micro-batch that is not full waits for the rows of calls that are between two evaluations
        # (their solver is updating its state): a few ms against a forward of tens of ms, for fuller batches.
        self.linger_s = linger_s
        self._thread: threading.Thread | None = None
        self._rr = 0
        self.busy_s = 0.0  # time spent executing forwards (a load figure)

    def add(self, scheduler: "ModelScheduler") -> "ModelScheduler":
        with self.cv:
            self.schedulers.append(scheduler)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="noisesearch-compute", daemon=True)
                self._thread.start()
        return scheduler

    @property
    def queued_rows(self) -> int:
        with self.cv:
            return sum(s.queued_rows_locked() for s in self.schedulers)

    def _run(self) -> None:
        while True:
            self.step()

    def step(self) -> None:
        with self.cv:
            while True:
                scheduler = self._pick_locked()
                if scheduler is None:
                    self.cv.wait()
                    continue
                deadline = time.monotonic() + self.linger_s
                while scheduler.wants_more_locked() and (left := deadline - time.monotonic()) > 0:
                    self.cv.wait(left)
                    scheduler.drop_cancelled_locked()
                if scheduler.oldest_locked() is None:  # cancelled while it lingered
                    continue
                batch = scheduler.schedule_locked()
                break
        t0 = time.perf_counter()
        try:
            with DEVICE_LOCK:
                out = scheduler.execute(batch)
            err = None
        except Exception as e:  # e.g. out of memory: every call in the batch gets it, the loop lives on
            out, err = None, e
        self.busy_s += time.perf_counter() - t0
        with self.cv:
            scheduler.update_locked(batch, out, err)

    def _pick_locked(self) -> "ModelScheduler | None":
        """The network whose oldest waiting work is oldest: first come, first served between networks."""
        best = None
        for s in self.schedulers:
            s.drop_cancelled_locked()
            head = s.oldest_locked()
            if head is not None and (best is None or head < best[0]):
                best = (head, s)
        return None if best is None else best[1]


class ModelScheduler:
    """A queue of row-requests for one network `fn(*inputs) -> outputs` (row-aligned), and its packing policy."""

    def __init__(self, loop: ComputeLoop, name: str, fn: Callable[..., torch.Tensor], micro_batch: int,
                 reproducibility: str = EXACT):
        if micro_batch < 1:
            raise ValueError(f"{name}: micro_batch must be >= 1, got {micro_batch}")
        if reproducibility not in REPRODUCIBILITY:
            raise ValueError(f"reproducibility: {reproducibility!r} is not one of {list(REPRODUCIBILITY)}")
        self.loop, self.name, self.fn = loop, name, fn
        self.micro_batch, self.reproducibility = micro_batch, reproducibility
        self.queue: list[Work] = []
        self.active = 0  # calls in a solve on this network (between evaluations, they will submit again)
        self.forwards = 0
        self.rows_run = 0
        self.padded_rows = 0
        loop.add(self)

    # ---------- the call side ----------

    def run(self, work: Work) -> Work:
        """Submit `work` and wait for its rows (polling the call's liveness, so a cancel leaves at once)."""
        if work.size is not None and work.size < work.unit:
            raise ValueError(f"{work.what}: a forced micro-batch of {work.size} rows cannot hold {work.unit}")
        if work.rows % work.unit:
            raise ValueError(f"{work.what}: {work.rows} rows are not whole units of {work.unit}")
        if work.is_active is None:
            work.is_active = getattr(CALL, "is_active", None)
        if work.rows == 0:
            work.out = torch.empty(0)
            return work
        with self.loop.cv:
            self.queue.append(work)
            self.loop.cv.notify_all()
        while not work.done.wait(self.loop.poll_s):
            if work.is_active is not None and not work.is_active():
                self.cancel(work)
        if work.error is not None:
            raise work.error
        return work

    @contextlib.contextmanager
    def session(self):
        """Around a call's solve: the loop may wait a moment for its next rows when a micro-batch is not full."""
        with self.loop.cv:
            self.active += 1
        try:
            yield
        finally:
            with self.loop.cv:
                self.active -= 1
                self.loop.cv.notify_all()

    def cancel(self, work: Work) -> None:
        with self.loop.cv:
            if work in self.queue:
                self.queue.remove(work)
            if not work.done.is_set():
                work.error = Cancelled("the client cancelled or its deadline passed")
                work.done.set()

    # ---------- the loop side (called with loop.cv held) ----------

    def wants_more_locked(self) -> bool:
        """A micro-batch not yet full while calls in a solve have no rows waiting (they are about to submit)."""
        waiting = [w for w in self.queue if w.next_row < w.rows]
        rows = sum(w.rows - w.next_row for w in waiting)
        return len(waiting) < self.active and rows < self.micro_batch

    def queued_rows_locked(self) -> int:
        return sum(w.rows - w.next_row for w in self.queue)

    def drop_cancelled_locked(self) -> None:
        for w in [w for w in self.queue if w.is_active is not None and not w.is_active()]:
            self.queue.remove(w)
            w.error = Cancelled("the client cancelled or its deadline passed")
            w.done.set()

    def oldest_locked(self) -> int | None:
        waiting = [w.id for w in self.queue if w.next_row < w.rows]
        return min(waiting) if waiting else None

    def _size_of(self, w: Work) -> int | None:
        """The micro-batch class of a work: a forced size, the fixed size (exact) or None (fast, sized to load)."""
        if w.size is not None:
            return w.size
        return self.micro_batch if self.reproducibility == EXACT else None

    def schedule_locked(self) -> tuple[int, list[tuple[Work, int, int]]]:
        """The next micro-batch: its size and (work, first row, rows) slices, dealt a unit at a time round-robin."""
        waiting = [w for w in self.queue if w.next_row < w.rows]
        head = min(waiting, key=lambda w: w.id)
        cls = self._size_of(head)
        same = sorted((w for w in waiting if self._size_of(w) == cls), key=lambda w: w.id)
        if cls is None:
            cls = bucket(sum(w.rows - w.next_row for w in same), self.micro_batch)
            cls = max(cls, max(w.unit for w in same))
        taken = {w: 0 for w in same}
        room, progress = cls, True
        while room > 0 and progress:
            progress = False
            for w in same:
                left = w.rows - w.next_row - taken[w]
                if left >= w.unit and room >= w.unit:
                    taken[w] += w.unit
                    room -= w.unit
                    progress = True
        slices = []
        for w, n in taken.items():
            if n:
                slices.append((w, w.next_row, n))
                w.next_row += n
        return cls, slices

    def execute(self, batch: tuple[int, list[tuple[Work, int, int]]]) -> torch.Tensor:
        size, slices = batch
        parts = [[w.inputs[k][a:a + n] for w, a, n in slices] for k in range(len(slices[0][0].inputs))]
        inputs = [torch.cat(p) for p in parts]
        rows = inputs[0].shape[0]
        if rows < size:
            inputs = [torch.cat([t, t[:1].expand(size - rows, *t.shape[1:])]) for t in inputs]
        with torch.inference_mode():
            out = self.fn(*inputs)[:rows]
        self.forwards += 1
        self.rows_run += rows
        self.padded_rows += size - rows
        return out

    def update_locked(self, batch, out: torch.Tensor | None, err: Exception | None) -> None:
        size, slices = batch
        at = 0
        for w, a, n in slices:
            if w.done.is_set():  # cancelled while its rows ran
                at += n
                continue
            if err is not None:
                w.error = err
            else:
                piece = out[at:at + n]
                if w.out is None:
                    w.out = torch.empty((w.rows, *piece.shape[1:]), dtype=piece.dtype, device=piece.device)
                w.out[a:a + n] = piece
                w.sizes.extend([size] * (n // w.unit))  # in row order: units are dealt in order
                w.finished_rows += n
            at += n
            if w.error is not None or w.finished_rows == w.rows:
                if w in self.queue:
                    self.queue.remove(w)
                w.done.set()
        self.loop.cv.notify_all()


def check_finite(x: torch.Tensor, what: str) -> None:
    """Raise NonFinite naming the evaluation and the samples whose output is NaN or infinite."""
    bad = ~torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)
    if bool(bad.any()):
        rows = bad.nonzero().flatten().tolist()
        raise NonFinite(f"{what} gave non-finite values (NaN or inf) for sample(s) {rows[:8]}"
                        f"{' ...' if len(rows) > 8 else ''}: lower guidance_scale or check the inputs")

"""The loop's safeguard against divergence: backtracking with a tenfold smaller learning rate.

**Why.** The papers' learning rates were tuned for CaffeNet (LRN, 0–255 inputs) and HOG. On
other networks, layers and photographs the same rate can be too large: the α-norm term
(Σ x⁶, gradient ∝ x⁵) then grows by orders of magnitude within a handful of steps and
overflows (torchvision's AlexNet at pool2 on the bundled ``chelsea`` diverges at iteration 18).
A fixed smaller rate would change every run that is stable today; a calibration pass would cost
iterations on every run. Backtracking costs nothing while the schedule is stable and acts only
where it is not.

**The rule.** At every host sync (``sync_every`` steps; no extra syncs: the test reads the
energies that the loop pulls to the host anyway) the new energies are checked. A step *fails*
when its energy is non-finite, or larger than ``GROWTH_FACTOR`` (100) times the smallest
energy of the ``WINDOW`` (5) steps before it. A stable run of either preset never comes near
that: its energy goes down, and where momentum makes it oscillate the swings stay within a few
times (the robustness benchmark, ``benchmarks/robustness.py``, records the largest ratio seen:
4.05 over its first 47 runs without a back-off, against ≥ 6600 in the runs that diverged).
At each sync that passes, the iterate and the optimiser's state (momentum; AdaGrad's G and v)
are snapshotted; the last ``WINDOW`` snapshots are kept. On a failure the loop goes back to the
one of lowest energy among them (the steps just before an explosion are usually already
climbing: on ``chelsea`` the data term starts to oscillate ~8 steps before the α-norm
overflows, and going back only one step leaves the iterate on the ramp), caps the learning rate
at a tenth of the rate of the failing step (``SHRINK``), applies the preset's own rule for a
change of rate (CVPR15 resets the momentum, IJCV16 zeroes the velocity and keeps G), and redoes
the steps from the snapshot, dropping the discarded ones from the history. The cap, not a
scaling of the whole remaining schedule: the schedule's later, already smaller rates are kept
where they are below it, so a back-off early in a run does not also slow its last phases by 10×.
At most ``MAX_BACKOFFS`` (3) back-offs (the rate down to 1/1000 of the failing one): after that
a growing energy is left alone and a non-finite one stops the run with
``status="non-finite"``, keeping the last finite iterate, as the loop did before the safeguard.
A back-off redoes steps, so the run makes at most ``MAX_BACKOFFS × WINDOW × sync_every`` more
iterations than its schedule; ``iterations`` counts the steps of the final trajectory.

Every back-off is recorded: ``history["lr"]`` holds the rate actually used at each step, and the
metrics hold ``lr_backoffs`` (the count) and ``lr_backoff_steps`` (the steps where a failure was
seen). ``safeguard=False`` turns it off.
"""
import collections
import math

GROWTH_FACTOR = 100.0
WINDOW = 5
SHRINK = 10.0
MAX_BACKOFFS = 3


class Safeguard:
    """Snapshots (x, optimiser state) at good syncs; decides and performs the back-offs."""

    def __init__(self, optimizer, enabled=True, max_backoffs=MAX_BACKOFFS):
        self.opt, self.enabled, self.max_backoffs = optimizer, bool(enabled), int(max_backoffs)
        self.cap = math.inf  # the largest rate allowed (lowered by each back-off)
        self.backoff_steps = []  # the step of each failure that caused a back-off
        self.snapshots = collections.deque(maxlen=WINDOW)  # (energy, step, x, optimiser state)

    @property
    def backoffs(self):
        return len(self.backoff_steps)

    @property
    def x(self):
        """The last snapshot's iterate (None before the first sync)."""
        return self.snapshots[-1][2] if self.snapshots else None

    def rate(self, scheduled):
        """The rate of a step: the schedule's, capped by the back-offs so far."""
        return scheduled if scheduled <= self.cap else self.cap

    def save(self, x, step, energy):
        """Snapshot the iterate of ``step`` (energy: its mean energy) and the optimiser state
        that goes with it."""
        self.snapshots.append((energy, step, x.copy(), self.opt.get_state()))

    def failure(self, energies, start):
        """(step index into ``energies``, reason) of the first failing entry at or after
        ``start``, or None. ``energies``: the host list of the whole history."""
        for i in range(start, len(energies)):
            e = energies[i]
            if not math.isfinite(e):
                return i, "non-finite"
            ref = min(energies[max(0, i - WINDOW):i], default=None)
            if ref is not None and ref > 0 and e > GROWTH_FACTOR * ref:
                return i, f"grew {e / ref:.3g}x in {min(i, WINDOW)} steps"
        return None

    def can_back_off(self):
        """Whether a failure leads to a back-off (False: give up on a non-finite energy, ignore
        a growing one)."""
        return self.enabled and self.backoffs < self.max_backoffs and self.x is not None

    def back_off(self, failed_step, failed_rate):
        """Go back to the snapshot of lowest energy among the last WINDOW; cap the rate at
        ``failed_rate``/SHRINK. Returns (x, the step to redo from)."""
        self.backoff_steps.append(int(failed_step))
        self.cap = failed_rate / SHRINK
        best = min(range(len(self.snapshots)), key=lambda i: self.snapshots[i][0])
        for _ in range(len(self.snapshots) - 1 - best):  # later snapshots are discarded
            self.snapshots.pop()
        _, step, x, state = self.snapshots[-1]
        self.opt.set_state(state)
        self.opt.reset()  # a change of rate: the preset's rule (momentum / velocity to zero)
        return x.copy(), step

    def metrics(self):
        return {"lr_backoffs": self.backoffs, "lr_backoff_steps": list(self.backoff_steps)}

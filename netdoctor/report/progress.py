"""Progress of a check on stderr while it probes (`--progress auto|plain|none`).

Used by check.command around the probe stage. `live` redraws one status line in place (a
terminal); `plain` writes one line per finished layer (`progress: dns: 8 steps done in 2.1 s`),
what a CI log can keep; `auto` is live on a terminal and plain otherwise. stdout stays the report's.
"""

from __future__ import annotations

import time
from collections import Counter
from enum import Enum
from typing import Sequence

from netdoctor.environment import Environment
from netdoctor.model import Observation, Step


class ProgressMode(Enum):
    AUTO = "auto"
    PLAIN = "plain"
    NONE = "none"


class Progress:
    """Counts the steps of each layer as they finish; a context manager around the probing."""

    def __init__(self, env: Environment, mode: ProgressMode, steps: Sequence[Step]):
        self.env = env
        live_terminal = bool(getattr(env.stderr, "isatty", lambda: False)())
        self.live = mode is ProgressMode.AUTO and live_terminal
        self.plain = mode is ProgressMode.PLAIN or (mode is ProgressMode.AUTO and not live_terminal)
        self.total = len(steps)
        self.left = Counter(step.layer for step in steps)
        self.ran: Counter = Counter()
        self.failed: Counter = Counter()
        self.done = 0
        self.started = time.monotonic()
        self._status = None

    def __enter__(self) -> Progress:
        if self.live:
            self._status = self.env.error_console().status("probing…")
            self._status.__enter__()
        return self

    def __exit__(self, exc_type, *exc_info) -> None:
        self.stop()
        if exc_type is None:  # steps shared by several targets ran once: their layers end here
            for layer in [layer for layer, left in self.left.items() if left > 0 and self.ran[layer]]:
                self._finished(layer)

    def stop(self) -> None:
        if self._status is not None:
            self._status.__exit__(None, None, None)
            self._status = None

    def line(self, text: str) -> None:
        """A plain progress line (nothing in live or no-progress mode)."""
        if self.plain:
            self.env.stderr.write(f"progress: {text}\n")
            self.env.stderr.flush()

    def step_done(self, step: Step, observation: Observation) -> None:
        self.done += 1
        self.left[step.layer] -= 1
        self.ran[step.layer] += 1
        self.failed[step.layer] += observation.error is not None
        if self._status is not None:
            self._status.update(f"probing… {self.done}/{self.total} {step.title}")
        if self.left[step.layer] == 0:
            self._finished(step.layer)

    def _finished(self, layer) -> None:
        errors = f", {self.failed[layer]} could not run" if self.failed[layer] else ""
        self.line(f"{layer.value}: {self.ran[layer]} steps done in {time.monotonic() - self.started:.1f} s{errors}")
        self.left[layer] = 0

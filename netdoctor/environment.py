"""The injected Environment: streams, tty and colour, so tests run the CLI in-process.

Built once by `cli.main()` (or by a test) and handed to every command through the click context.
Renderers get their rich Console from here; rich itself honours NO_COLOR / FORCE_COLOR / non-tty.
Off a terminal text is not wrapped (or at $COLUMNS).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:  # rich is imported by the commands that print through it, not at start-up
    from rich.console import Console


UNWRAPPED = 10_000  # columns off a terminal without COLUMNS: no line is that long


@dataclass
class Environment:
    stdout: IO[str] = field(default_factory=lambda: sys.stdout)
    stderr: IO[str] = field(default_factory=lambda: sys.stderr)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    width: int | None = None  # None: the terminal's width; off a terminal $COLUMNS, else lines are not wrapped
    # How commands reach the cluster: (kubeconfig, context) -> Kube. None: netdoctor.cluster.kube.Kube.connect.
    # Tests inject a fake here.
    connect: Callable[[str | None, str | None], Any] | None = None

    def console(self) -> Console:
        from rich.console import Console

        return Console(file=self.stdout, width=self._width(self.stdout), emoji=False, _environ=dict(self.environ))

    def error_console(self) -> Console:
        from rich.console import Console

        return Console(file=self.stderr, width=self._width(self.stderr), emoji=False, _environ=dict(self.environ))

    def _width(self, stream: IO[str]) -> int | None:
        """A CI log is not wrapped (a verdict stays on the line `grep` finds), unless COLUMNS says how."""
        if self.width is not None or bool(getattr(stream, "isatty", lambda: False)()):
            return self.width
        columns = self.environ.get("COLUMNS", "")
        return int(columns) if columns.isdigit() and int(columns) > 0 else UNWRAPPED

    @property
    def stdout_isatty(self) -> bool:
        return bool(getattr(self.stdout, "isatty", lambda: False)())

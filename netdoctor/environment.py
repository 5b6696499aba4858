"""The injected Environment: streams, tty and colour, so tests run the CLI in-process.

Built once by `cli.main()` (or by a test) and handed to every command through the click context.
Renderers get their rich Console from here; rich itself honours NO_COLOR / FORCE_COLOR / non-tty.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:  # rich is imported by the commands that print through it, not at start-up
    from rich.console import Console


@dataclass
class Environment:
    stdout: IO[str] = field(default_factory=lambda: sys.stdout)
    stderr: IO[str] = field(default_factory=lambda: sys.stderr)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    width: int | None = None  # None: rich decides (terminal width, or 80 off a tty)
    # How commands reach the cluster: (kubeconfig, context) -> Kube. None: netdoctor.cluster.kube.Kube.connect.
    # Tests inject a fake here.
    connect: Callable[[str | None, str | None], Any] | None = None

    def console(self) -> Console:
        from rich.console import Console

        return Console(file=self.stdout, width=self.width, _environ=dict(self.environ))

    def error_console(self) -> Console:
        from rich.console import Console

        return Console(file=self.stderr, width=self.width, _environ=dict(self.environ))

    @property
    def stdout_isatty(self) -> bool:
        return bool(getattr(self.stdout, "isatty", lambda: False)())

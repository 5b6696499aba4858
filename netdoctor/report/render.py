"""`render(report, fmt, env, verbose)`: a finished Report in the format asked for, on env's streams.

Called by check.command; picks the format's module and imports only that one.
"""

from __future__ import annotations

from netdoctor.environment import Environment
from netdoctor.model import Report

FORMATS = ("text", "json", "markdown", "junit")


def render(report: Report, fmt: str, env: Environment, verbose: bool = False) -> None:
    if fmt == "text":
        from netdoctor.report import text

        text.render(report, env.console(), verbose)
        return
    if fmt == "json":
        from netdoctor.report.json import render as to_text
    elif fmt == "markdown":
        from netdoctor.report.markdown import render as to_text
    else:
        from netdoctor.report.junit import render as to_text
    env.stdout.write(to_text(report))
    env.stdout.flush()

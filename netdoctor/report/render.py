"""`render(report, fmt, env, verbose)`: a finished Report in the format asked for, on env's streams.

Called by check.command; picks the format's module and imports only that one (`preload`: ahead,
in a thread). `render_many`: the reports of many targets and their summary (report.many).
"""

from __future__ import annotations

import importlib

from netdoctor.environment import Environment
from netdoctor.model import Report

FORMATS = ("text", "json", "markdown", "junit")
_MODULES = {"text": "netdoctor.report.text", "json": "netdoctor.report.json", "markdown": "netdoctor.report.markdown",
            "junit": "netdoctor.report.junit"}


def preload(fmt: str) -> None:
    """Import the format's module (and rich, for text) ahead: check.command runs this in a thread
    while the probes run, so the finished report is written at once."""
    importlib.import_module(_MODULES[fmt])


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


def render_many(reports: tuple[Report, ...], fmt: str, env: Environment, verbose: bool = False) -> None:
    from netdoctor.report import many

    if fmt == "text":
        console = env.console()
        for report in reports:
            render(report, fmt, env, verbose)
            console.print()
        console.print(f"summary: {len(reports)} targets, {many.worst(reports).value.upper()}", markup=False)
        for line in many.table_lines(reports):
            console.print(line, markup=False, soft_wrap=True)
        return
    text = {"json": many.to_json, "markdown": many.to_markdown, "junit": many.to_junit}[fmt](reports)
    env.stdout.write(text)
    env.stdout.flush()

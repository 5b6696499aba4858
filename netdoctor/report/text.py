"""`-o text` (default): a rich tree per layer, evidence shown for what did not pass (all with -v),
buffered logs of failed checks, then the verdict with the next commands. Plain off a terminal."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.tree import Tree

from netdoctor.model import CheckResult, Report, State

STYLE = {State.PASS: "green", State.WARN: "yellow", State.FAIL: "bold red", State.ERROR: "magenta", State.SKIP: "dim"}


def _tag(state: State) -> str:
    return f"[{STYLE[state]}]{state.value.upper():5}[/]"


def render(report: Report, console: Console, verbose: bool = False) -> None:
    tree = Tree(f"[bold]{escape(report.target)}[/] in {escape(report.namespace)} from {escape(report.source)}")
    for layer in report.layers:
        branch = tree.add(f"{_tag(layer.state)} {escape(layer.title)}" + (f" — {escape(layer.reason)}" if layer.reason else ""))
        if layer.reason and not verbose:
            continue
        for check in layer.checks:
            _check(branch, check, verbose)
    console.print(tree)
    for note in report.notes:
        console.print(f"[dim]note: {escape(note)}[/]")
    _verdict(report, console)


def _check(branch: Tree, c: CheckResult, verbose: bool) -> None:
    node = branch.add(f"{_tag(c.state)} {c.check_id} {escape(c.title)}: {escape(c.message)}")
    shown = verbose or c.state in (State.FAIL, State.ERROR, State.WARN)
    for line in c.evidence if shown else ():
        node.add(escape(line))
    if c.log and (verbose or c.state in (State.FAIL, State.ERROR)):
        logs = node.add("[dim]log[/]")
        for line in c.log:
            logs.add(f"[dim]{escape(line)}[/]")


def _verdict(report: Report, console: Console) -> None:
    d = report.diagnosis
    console.print()
    where = f" at {d.first_broken.value}" if d.first_broken else ""
    console.print(f"{_tag(d.state)}{escape(where)}: [bold]{escape(d.headline)}[/]" + (f" ({d.check_id})" if d.check_id else ""))
    if d.remediation:
        console.print(f"fix: {escape(d.remediation)}")
    for command in d.commands:
        console.print(f"  $ {escape(command)}")

"""`netdoctor smoke -f FILE`: a declarative file of expectations checked in one run on shared
probes. Registered on the app by netdoctor.cli.

Like check.command, it imports the pipeline inside the command (cold start). The file is read and
validated first (check.smoke: FILE:LINE and the field, exit 2), then every
expectation is resolved against the cluster (a missing name is exit 3) — all before anything is
created. Then one shared run (probe.runner.run_many): every expectation's connections at once, so
a file of denials costs about one --timeout. Each expectation is judged (judge.smoke) with the
check's verdict for its diagnosis, and the report rendered (report.smoke). Exit 0 when every
expectation held (warnings allowed), 1 when one did not, 4 when one could not be judged.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from netdoctor.check.command import (
    MAX_TIMEOUT, MIN_TIMEOUT, REQUEST_TIMEOUT_HELP, _capture_mode, _check_namespace, _check_timeout, _connect,
    _execs_end_on_interrupt, _exit_code, _probe_deadline, _progress_mode,
)
from netdoctor.cluster import REQUEST_TIMEOUT
from netdoctor.environment import Environment
from netdoctor.errors import UsageError
from netdoctor.exitcodes import ExitCode


def smoke(
    ctx: typer.Context,
    file: Optional[Path] = typer.Option(None, "-f", "--file", help="The smoke file (YAML): services, flows, names",
                                        dir_okay=False),
    schema: bool = typer.Option(False, "--schema", help="Print the smoke file's JSON Schema and exit"),
    context: Optional[str] = typer.Option(None, "--context", help="kubeconfig context"),
    kubeconfig: Optional[str] = typer.Option(None, "--kubeconfig", help="Path to the kubeconfig file"),
    timeout: float = typer.Option(3.0, "--timeout", help=f"Seconds per network probe ({MIN_TIMEOUT:g} to "
                                  f"{MAX_TIMEOUT:g})"),
    output: str = typer.Option("text", "-o", "--output", metavar="text|json|markdown|junit",
                               help="text, json, markdown or junit"),
    image: Optional[str] = typer.Option(None, "--image", help="Probe image (needs bash; netshoot by default)"),
    capture: str = typer.Option("auto", "--capture", metavar="auto|strict|off", help="Packet capture at every hop: auto, strict or off"),
    capture_namespace: Optional[str] = typer.Option(None, "--capture-namespace",
                                                    help="Namespace for the hostNetwork capture probes"),
    request_timeout: str = typer.Option(f"{REQUEST_TIMEOUT:g}s", "--request-timeout", metavar="SECONDS",
                                        help=REQUEST_TIMEOUT_HELP),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Show every expectation's evidence"),
    progress: str = typer.Option("auto", "--progress", metavar="auto|plain|none",
                                 help="Progress on stderr: live on a terminal (auto), one line per finished layer "
                                      "(plain: auto's choice off a terminal), or none"),
) -> int:
    """Check a file of expectations in one run: Services that must be healthy, flows that must be
    allowed or denied, names that must resolve."""
    env: Environment = ctx.obj
    from netdoctor.check import smoke as spec
    from netdoctor.check.target import parse_namespace
    from netdoctor.model import State
    from netdoctor.report.render import FORMATS

    if schema:
        env.stdout.write(json.dumps(spec.schema(), indent=2) + "\n")
        return ExitCode.OK
    if file is None:
        raise UsageError("missing -f FILE (the smoke file); --schema prints its JSON Schema")
    if output not in FORMATS:
        raise UsageError(f"unknown output format {output!r}; use one of {', '.join(FORMATS)}")
    mode = _capture_mode(capture)
    progress_mode = _progress_mode(progress)
    _check_timeout(timeout)
    if capture_namespace is not None:
        parse_namespace(capture_namespace, "--capture-namespace")
    smoke_file = spec.load(file)
    from netdoctor import catalog
    from netdoctor.check import plan

    checks = catalog.load()
    kube = _connect(env, kubeconfig, context, request_timeout)
    started = time.monotonic()
    if capture_namespace is not None:
        _check_namespace(kube, capture_namespace, "--capture-namespace")
    units = spec.build(kube, smoke_file, plan.Options(capture=mode, capture_namespace=capture_namespace))
    report = _run(env, kube, smoke_file, units, checks, timeout, image, started, progress_mode)
    from netdoctor.report import smoke as rendered

    rendered.render(report, output, env, verbose)
    worst = report.state
    return _exit_code(State.PASS if worst in (State.WARN, State.SKIP) else worst)


def _run(env, kube, smoke_file, units, checks, timeout, image, started, progress_mode):
    from netdoctor.check.many import STEP_WORKERS
    from netdoctor.judge import coverage, paths
    from netdoctor.model import SmokeReport
    from netdoctor.probe import runner
    from netdoctor.report.progress import Progress

    options = runner.RunOptions(timeout=timeout, deadline=_probe_deadline(env), workers=STEP_WORKERS,
                                **({"image": image} if image else {}))
    jobs = tuple(runner.Job(u.plan, u.facts) for u in units)
    steps = runner.shared_steps(jobs)
    with _execs_end_on_interrupt(kube), Progress(env, progress_mode, steps) as progress:
        results = runner.run_many(kube, jobs, options, progress.step_done, coverage.uncovered, paths.unsettled)
    judged = judge_units(units, results, checks, started)
    for note in results[0].owner_fallbacks if results else ():
        env.stderr.write(f"note: {note}\n")
    return SmokeReport(smoke_file.path, judged, time.monotonic() - started, results[0].pods_created if results else 0)


def judge_units(units, results, checks, started):
    """Each expectation's result, from its units' evidence, in the file's order."""
    from netdoctor.check.smoke import FLOW_LAYERS
    from netdoctor.judge import smoke as expectations
    from netdoctor.judge.verdict import judge
    from netdoctor.model import Evidence, ExpectKind

    by_item: dict = {}
    for unit, result in zip(units, results):
        evidence = Evidence(unit.facts, unit.plan, result.observations, result.captures, result.probes)
        by_item.setdefault(unit.item, []).append((unit, evidence))
    judged = []
    for item, found in by_item.items():
        exp = item.expectation
        unit, evidence = found[0]
        if exp.kind is ExpectKind.HEALTHY:
            judged.append(expectations.healthy(exp, judge(evidence, checks, time.monotonic() - started)))
        elif exp.kind is ExpectKind.RESOLVE:
            judged.append(expectations.lookup(exp, evidence, checks))
        elif item.target.cidr:
            judged.append(expectations.cidr(exp, evidence, checks))
        else:
            judged.append(expectations.flow(exp, [(ev, judge(ev, checks, time.monotonic() - started, only=FLOW_LAYERS))
                                                  for _, ev in found]))
    return tuple(judged)

"""Logs a person can read: text off a terminal is not hard-wrapped (or wraps at $COLUMNS), and
progress goes to stderr as live status on a terminal or one plain line per finished layer."""

from __future__ import annotations

import re
from io import StringIO

import pytest

from netdoctor.environment import Environment
from netdoctor.model import Layer, Observation
from netdoctor.report.progress import Progress, ProgressMode
from netdoctor.report.render import render
from test_check_command import run
from test_judge import facts
from test_report import BROKEN
from netdoctor.check import plan


class Terminal(StringIO):
    def isatty(self):
        return True


def text(environ, stdout=None):
    env = Environment(stdout=stdout or StringIO(), stderr=StringIO(), environ=environ)
    render(BROKEN, "text", env, verbose=True)
    return env.stdout.getvalue()


def test_off_a_terminal_a_verdict_stays_on_one_line():
    out = text({"NO_COLOR": "1"})
    [verdict] = [line for line in out.splitlines() if line.startswith("FAIL  at")]
    assert verdict.endswith("(ND-DNS-002)") and len(verdict) > 80  # grep finds the whole verdict
    assert max(map(len, out.splitlines())) > 80 and not any(line.endswith(" ") for line in out.splitlines())


def test_columns_sets_the_width_off_a_terminal():
    out = text({"NO_COLOR": "1", "COLUMNS": "70"})
    assert max(map(len, out.splitlines())) <= 70


def test_a_terminal_keeps_its_own_width():
    out = text({"NO_COLOR": "1", "COLUMNS": "72", "TERM": "xterm"}, stdout=Terminal())
    assert max(len(re.sub(r"\x1b\[[0-9;]*m", "", line)) for line in out.splitlines()) <= 72


def steps():
    return plan.build(facts()).steps


def test_plain_progress_is_one_line_per_finished_layer():
    env = Environment(stdout=StringIO(), stderr=StringIO(), environ={})
    all_steps = steps()
    with Progress(env, ProgressMode.AUTO, all_steps) as progress:  # auto off a terminal: plain
        for step in all_steps:
            progress.step_done(step, Observation(step.key, None, "boom" if step.layer is Layer.DNS else None))
    lines = env.stderr.getvalue().splitlines()
    layers = {s.layer for s in all_steps}
    assert len(lines) == len(layers) and env.stdout.getvalue() == ""
    dns = next(line for line in lines if line.startswith("progress: dns: "))
    count = sum(s.layer is Layer.DNS for s in all_steps)
    assert re.fullmatch(rf"progress: dns: {count} steps done in [\d.]+ s, {count} could not run", dns)


def test_layers_whose_shared_steps_ran_once_end_with_the_run():
    env = Environment(stdout=StringIO(), stderr=StringIO(), environ={})
    all_steps = steps()
    with Progress(env, ProgressMode.PLAIN, all_steps + all_steps) as progress:  # two targets, steps shared
        for step in all_steps:
            progress.step_done(step, Observation(step.key, None))
    lines = env.stderr.getvalue().splitlines()
    assert len(lines) == len({s.layer for s in all_steps})


@pytest.mark.parametrize("mode", [ProgressMode.NONE, ProgressMode.AUTO])
def test_no_plain_lines_with_none_or_on_a_terminal(mode):
    env = Environment(stdout=StringIO(), stderr=Terminal(), environ={"TERM": "xterm"})
    all_steps = steps()
    with Progress(env, mode, all_steps) as progress:
        for step in all_steps:
            progress.step_done(step, Observation(step.key, None))
    assert "progress:" not in env.stderr.getvalue()
    assert ("probing…" in env.stderr.getvalue()) is (mode is ProgressMode.AUTO)


def test_plain_is_plain_even_on_a_terminal():
    env = Environment(stdout=StringIO(), stderr=Terminal(), environ={"TERM": "xterm"})
    all_steps = steps()
    with Progress(env, ProgressMode.PLAIN, all_steps) as progress:
        for step in all_steps:
            progress.step_done(step, Observation(step.key, None))
    assert "\x1b" not in env.stderr.getvalue() and env.stderr.getvalue().startswith("progress: ")


def test_unknown_progress_mode_is_a_usage_error():
    code, _, err = run("check", "svc/web", "-n", "demo", "--progress", "loud")
    assert code == 2 and err.startswith("error: unknown progress mode 'loud'; use auto, plain or none")

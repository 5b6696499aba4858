"""Small helpers shared by the layer judges: result constructors and observation filters."""

from __future__ import annotations

from typing import Iterable

from netdoctor.model import CheckResult, Evidence, Observation, State, Step


def passed(check_id: str, message: str, evidence: Iterable[str] = (), log: tuple[str, ...] = ()) -> CheckResult:
    return CheckResult(check_id, State.PASS, message=message, evidence=tuple(evidence), log=log)


def skip(check_id: str, reason: str) -> CheckResult:
    return CheckResult(check_id, State.SKIP, message=reason)


def failed(
    check_id: str,
    cause: str,
    message: str,
    evidence: Iterable[str] = (),
    params: dict | None = None,
    state: State = State.FAIL,
    log: tuple[str, ...] = (),
) -> CheckResult:
    return CheckResult(check_id, state, cause, message, tuple(evidence), dict(params or {}), log=log)


def error(check_id: str, message: str, evidence: Iterable[str] = (), log: tuple[str, ...] = ()) -> CheckResult:
    return CheckResult(check_id, State.ERROR, message=message, evidence=tuple(evidence), log=log)


def completed(evidence: Evidence, check_id: str) -> tuple[list[tuple[Step, Observation]], list[str]]:
    """The check's steps that produced a result, and one line per step that did not."""
    done, problems = [], []
    for step, obs in evidence.runs(check_id):
        if obs is None:
            problems.append(f"{step.title or step.key}: did not run")
        elif obs.error is not None or obs.result is None:
            problems.append(f"{step.title or step.key}: {obs.error or 'no result'}")
        else:
            done.append((step, obs))
    return done, problems


def logs(evidence: Evidence, check_id: str) -> tuple[str, ...]:
    return tuple(line for _, obs in evidence.runs(check_id) if obs for line in obs.log)


def unsaid(evidence: Iterable[str], log: Iterable[str]) -> tuple[str, ...]:
    """The log lines the evidence lines don't already say: a line equal to an evidence line, or
    about the same subject (the text before its first ': ', e.g. one step's outcome), is left out."""
    said = {line.strip() for line in evidence}
    subjects = {_subject(line) for line in said} - {None}
    return tuple(line for line in log if line.strip() not in said and _subject(line.strip()) not in subjects)


def _subject(line: str) -> str | None:
    subject, colon, _ = line.partition(": ")
    return subject if colon else None


def names(items: Iterable[str], limit: int = 4) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")

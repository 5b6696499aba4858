"""The documented exit codes of every netdoctor command.

`cli.main()` is the only place that turns an outcome into one of these; the README lists them.
"""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # every check passed / the command did what was asked
    CHECK_FAILED = 1  # a layer failed (check), a flow is denied where asked (policy)
    USAGE = 2  # bad arguments, bad target syntax, unreadable input file
    CLUSTER = 3  # cluster unreachable, object not found, or the API said 403
    PROBES = 4  # probe pods could not run (image, PodSecurity, quota, ...)
    ENVIRONMENT = 5  # this machine can't do it (lab: not root, missing tool or kernel feature)
    INTERRUPTED = 130  # Ctrl-C or SIGTERM; everything created was cleaned up


MEANING = {
    ExitCode.OK: "every layer passed (warnings allowed)",
    ExitCode.CHECK_FAILED: "a layer failed (policy explain: the flow is denied)",
    ExitCode.USAGE: "bad arguments or input, refused before anything is created",
    ExitCode.CLUSTER: "cluster unreachable or forbidden, or the target does not exist",
    ExitCode.PROBES: "the probes could not run (PodSecurity, RBAC, image, quota)",
    ExitCode.ENVIRONMENT: "this machine cannot run the lab (not root, missing tool)",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C, SIGTERM); what was created is removed",
}


def epilog(*examples: str) -> str:
    """A command's help epilog: examples, then the exit codes (click keeps `\b` blocks as written)."""
    lines = ["\b", "Examples:", *(f"  {example}" for example in examples), "", "\b", "Exit codes:"]
    return "\n".join(lines + [f"  {int(code):<3}  {meaning}" for code, meaning in MEANING.items()])

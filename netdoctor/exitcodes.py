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

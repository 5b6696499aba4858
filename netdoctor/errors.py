"""Exceptions that carry their own exit code and one-line message.

Raised anywhere below the CLI; `cli.main()` prints `error: <message>` and exits with `exit_code`.
Anything else that escapes is a bug and is shown as such.
"""

from netdoctor.exitcodes import ExitCode


class NetdoctorError(Exception):
    exit_code: ExitCode = ExitCode.USAGE

    def __init__(self, message: str, *, hint: str | None = None, partial: dict | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.partial = partial  # with -o json: what the command could still tell, printed with the error


class UsageError(NetdoctorError):
    exit_code = ExitCode.USAGE


class InputFileError(UsageError):
    """A file the user named can't be read or parsed."""


class ClusterError(NetdoctorError):
    """The API server is unreachable, refused us (401/403), or an object is missing."""

    exit_code = ExitCode.CLUSTER


class ProbeError(NetdoctorError):
    """Probe pods could not be created or started."""

    exit_code = ExitCode.PROBES


class EnvironmentNotSuitable(NetdoctorError):
    """This machine can't do what was asked (not root, missing tool or kernel feature)."""

    exit_code = ExitCode.ENVIRONMENT


class Interrupted(NetdoctorError):
    exit_code = ExitCode.INTERRUPTED

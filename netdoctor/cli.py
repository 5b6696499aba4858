"""The command line: `main()` maps outcomes to exit codes, `program()` does the work.

Entry point of the `netdoctor` and `kubectl-netdoctor` scripts. Sub-commands live in their own
modules (lab, policy, check) and receive the injected Environment through the click context;
none of them prints an error or exits by itself. Heavy libraries (kubernetes, scapy) are imported
by the commands that need them, never here; the lab and policy command groups are imported only
when one of their commands runs (`netdoctor --help` lists them from `_GROUPS`), and help is
plain click text (typer's rich help imports rich's markdown and pygments: 0.3 s at every start).
"""

from __future__ import annotations

import gc
import importlib
import os
import signal
import sys
import typing
from typing import Sequence

import typer
import typer.core
from typer._click.exceptions import NoArgsIsHelpError  # typer vendors click and re-exports only some of it

from netdoctor import __version__
from netdoctor.check import command as check_command
from netdoctor.check import smoke_command
from netdoctor.environment import Environment
from netdoctor.errors import Interrupted, NetdoctorError, UsageError
from netdoctor.exitcodes import ExitCode, epilog

# Command groups imported on first use: name -> (module with a Typer `app`, its help).
_GROUPS = {
    "lab": ("netdoctor.lab.cli", "A disposable cluster made of real Linux networking."),
    "policy": ("netdoctor.policy.cli", "Who may talk to whom under the NetworkPolicies, and why."),
}


class _Stub(typer.core.TyperCommand):
    """A command group not imported yet: its name and help, for the root's --help."""


class _Root(typer.core.TyperGroup):
    """The root command: the groups of `_GROUPS` stand as stubs until a command line names one."""

    def __init__(self, *, commands=None, **attrs):
        stubs = {name: _Stub(name=name, help=help_text) for name, (_, help_text) in _GROUPS.items()}
        super().__init__(commands={**stubs, **(commands or {})}, **attrs)

    def list_commands(self, ctx) -> list[str]:
        return sorted(self.commands)

    def get_command(self, ctx, cmd_name: str):
        command = self.commands.get(cmd_name)
        if isinstance(command, _Stub):
            command = typer.main.get_group(importlib.import_module(_GROUPS[cmd_name][0]).app)
            command.name, command.help = cmd_name, _GROUPS[cmd_name][1]
            tailor(command)
            self.commands[cmd_name] = command
        return command

    def format_commands(self, ctx, formatter) -> None:
        """The commands with their first help line, without importing the stubs' groups."""
        rows = [(name, self.commands[name].get_short_help_str(formatter.width - 6 - len(name)))
                for name in self.list_commands(ctx) if not self.commands[name].hidden]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def loaded(self, ctx=None) -> typer.core.TyperGroup:
        """Every group imported (shell completion walks the whole tree)."""
        for name in list(self.commands):
            self.get_command(ctx, name)
        return self


def tailor(command) -> None:
    """Every parameter of `command` and its sub-commands: help says what an option takes
    (NAMESPACE, SECONDS, text|json), never its Python type (typer's <str>, <float>), and a plain
    value is converted without pydantic (see `_PlainValue`)."""
    for param in command.params:
        _readable_metavar(param)
        _plain_value(param)
    command.get_help_option = _with_plain_value(command.get_help_option)
    for sub in (getattr(command, "commands", None) or {}).values():
        if not isinstance(sub, _Stub):
            tailor(sub)


def _readable_metavar(param) -> None:
    if not param.opts[0].startswith("-"):  # an argument: its name says it all
        param.display_type = lambda ctx: ""
    if param.metavar is not None or getattr(param, "is_flag", False) or getattr(param, "count", False):
        return
    choices = _enum_values(getattr(getattr(param, "type_descriptor", None), "annotation", None))
    name = max(param.opts, key=len).lstrip("-") if param.opts[0].startswith("-") else param.name
    param.metavar = "|".join(choices) if choices else name.upper().replace("-", "_")


def _with_plain_value(get_help_option):
    """A command's --help option, made on first use, converted as `_plain_value` says (its None
    would have typer import pydantic)."""
    def tailored(ctx):
        option = get_help_option(ctx)
        if option is not None:
            _plain_value(option)
        return option
    return tailored


class _PlainValue:
    """Typer's conversion of a parameter's value without pydantic where it is plain: a str, int or
    float (or a list of str), or no value. Typer (0.29) builds a pydantic TypeAdapter for each
    parameter, defaults and None included: 0.15-0.19 s of every `check` before it reads the
    cluster, ~0.06 s of CPU once the kubernetes client's own import of pydantic is counted. click
    hands strings; numbers are read as Python reads them (a bad one is click's usage error); a
    path or an enum that has a value (its checks, its choices) goes to typer's own conversion."""

    KINDS = {str: "string", int: "integer", float: "float"}

    def __init__(self, kind: type | None):
        self.kind = kind  # None: typer converts a value

    def coerce(self, value, param, ctx):
        """As typer's RuntimeParam.coerce: None stays None (() for a multi-value parameter)."""
        several = param.multiple or param.nargs == -1
        if value is None:
            return () if several else None
        if self.kind is None:
            param._runtime_param = None  # typer builds its own converter, kept from now on
            return param.get_runtime_param().coerce(value, param=param, ctx=ctx)
        if several:
            if isinstance(value, str):
                raise typer.BadParameter("Value must be an iterable.", ctx=ctx, param=param)
            return [self._one(item, param, ctx) for item in value]
        return self._one(value, param, ctx)

    def _one(self, value, param, ctx):
        if isinstance(value, self.kind) and not isinstance(value, bool):
            return value
        try:
            return self.kind(value)
        except (TypeError, ValueError):
            raise typer.BadParameter(f"{value!r} is not a valid {self.KINDS[self.kind]}.", ctx=ctx,
                                     param=param) from None


def _plain_value(param) -> None:
    """Give a typer parameter `_PlainValue` as its converter where typer keeps one (the
    RuntimeParam it builds on first use); a typer that keeps none converts as it always did
    (tests/unit/test_cold_start.py notices pydantic coming back)."""
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is None or getattr(param, "_runtime_param", False) is not None:
        return
    annotation, info = descriptor.annotation, descriptor.parameter_info
    if typing.get_origin(annotation) is list and typing.get_args(annotation) == (str,):
        annotation = str
    plain = annotation in _PlainValue.KINDS and descriptor.file_annotation is None and all(
        getattr(info, name, None) is None for name in ("parser", "min", "max"))
    param._runtime_param = _PlainValue(annotation if plain else None)


def _enum_values(annotation) -> tuple[str, ...]:
    """The values of an Enum annotation (also inside Optional[…]), else ()."""
    import enum

    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, enum.Enum):
            return tuple(str(member.value) for member in candidate)
    return ()


app = typer.Typer(
    name="netdoctor",
    cls=_Root,
    help="Find where a Kubernetes packet is lost, and why. Every command also takes --version.",
    epilog=epilog("netdoctor check svc/api -n shop", "netdoctor policy matrix -f manifests/",
                  "netdoctor lab demo", "netdoctor schema check > netdoctor-check.schema.json"),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.command("check", epilog=epilog(
    "netdoctor check svc/api -n shop",
    "kubectl netdoctor check api -n shop --from deploy/frontend",
    "netdoctor check --all -n shop -o junit > netdoctor-junit.xml",
    "netdoctor check svc/api -n shop -o json --progress plain | jq .diagnosis"))(check_command.check)
app.command("cleanup", epilog=epilog("netdoctor cleanup -n shop --dry-run",
                                     "netdoctor cleanup -A --force"))(check_command.cleanup)
app.command("smoke", epilog=epilog("netdoctor smoke -f examples/shop-smoke.yaml",
                                   "netdoctor smoke -f smoke.yaml -o junit > netdoctor-junit.xml"))(smoke_command.smoke)

# The commands whose `-o json` prints a document, and its schema: their errors print one too.
JSON_DOCUMENTS = {("check",): "netdoctor.check/v1", ("policy", "matrix"): "netdoctor.matrix/v1",
                  ("smoke",): "netdoctor.smoke/v1"}


@app.command()
def schema(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The document: check, matrix, …", metavar="check|matrix|…"),
) -> int:
    """Print the JSON Schema of a `-o json` document (shipped in netdoctor/schemas/)."""
    from netdoctor import schemas

    if name not in schemas.schema_names():
        raise UsageError(f"no schema named {name!r}; use one of {', '.join(schemas.schema_names())}")
    ctx.obj.stdout.write(schemas.schema_file(name).read_text())
    return ExitCode.OK


@app.command()
def completion(
    ctx: typer.Context,
    shell: str = typer.Argument(..., help="bash, zsh or fish", metavar="bash|zsh|fish"),
) -> int:
    """Print the shell completion script (also shipped in completions/)."""
    from netdoctor import completions

    if shell not in completions.SHELLS:
        raise UsageError(f"unknown shell {shell!r}; use one of {', '.join(completions.SHELLS)}")
    ctx.obj.stdout.write(completions.render(shell, completion_tree()))
    return ExitCode.OK


def completion_tree():
    """The app's commands with the values worth completing."""
    from netdoctor import completions, schemas
    from netdoctor.lab.faults import CATALOG
    from netdoctor.lab.state import Cni, PolicyMode, ProxyMode

    faults = tuple(CATALOG)
    formats = ("text", "json", "markdown", "junit")
    values = {
        ("check",): {"-o": formats, "--capture": ("auto", "strict", "off"), "--progress": ("auto", "plain", "none")},
        ("smoke",): {"-o": formats, "--capture": ("auto", "strict", "off"), "--progress": ("auto", "plain", "none")},
        ("policy", "matrix"): {"-o": ("text", "json")},
        ("lab", "up"): {"--overlay": ("vxlan", "routed"), "--policy": tuple(m.value for m in PolicyMode),
                        "--cni": tuple(c.value for c in Cni), "--proxy": tuple(m.value for m in ProxyMode)},
        ("lab", "break"): {"": faults},
        ("lab", "fix"): {"": faults},
        ("lab", "demo"): {"--fault": faults},
        ("completion",): {"": completions.SHELLS},
        ("schema",): {"": schemas.schema_names()},
    }
    return completions.command_tree(typer.main.get_command(app).loaded(), values)


def kubectl_complete(argv: Sequence[str] | None = None, env: Environment | None = None) -> int:
    """`kubectl_complete-netdoctor ARG… WORD`: what kubectl offers for `kubectl netdoctor ARG…
    WORD<TAB>`. Quiet: a cluster that cannot be read offers nothing."""
    from netdoctor import completions
    from netdoctor.cluster import names

    env = env or Environment()
    args = sys.argv[1:] if argv is None else list(argv)
    words, current = args[:-1], (args[-1] if args else "")
    lister = completions.Lister(lambda kubeconfig: names.contexts(kubeconfig, env.environ),
                                lambda kind, namespace, kubeconfig, context: names.names(
                                    kind, namespace, kubeconfig, context, env.environ))
    found, directive = completions.complete(completion_tree(), words, current, lister)
    env.stdout.write("".join(f"{candidate}\n" for candidate in found) + f":{directive}\n")
    env.stdout.flush()
    return ExitCode.OK


def prog_name(argv0: str) -> str:
    """`kubectl netdoctor` when run as the kubectl plugin, else `netdoctor`."""
    return "kubectl netdoctor" if os.path.basename(argv0).startswith("kubectl-") else "netdoctor"


def program(argv: Sequence[str], env: Environment, name: str = "netdoctor") -> int:
    if "--version" in argv[: argv.index("--") if "--" in argv else None]:  # any command, before its arguments' checks
        env.stdout.write(f"netdoctor {__version__}\n")
        return ExitCode.OK
    command = typer.main.get_command(app)
    tailor(command)
    result = command.main(args=list(argv), prog_name=name, standalone_mode=False, obj=env)
    if result == ExitCode.INTERRUPTED:  # typer returns Ctrl-C as exit code 130, after the cleanups ran
        raise Interrupted("interrupted")
    return int(result) if isinstance(result, int) else ExitCode.OK


def _raise_interrupted(signum, frame):
    raise Interrupted("terminated by signal %d" % signum)


def main(argv: Sequence[str] | None = None, env: Environment | None = None) -> int:
    """The exit code of the command line `argv` (None: the process's own, whose end comes next)."""
    if argv is None:
        _collect_less()
    code = _outcome(argv, env or Environment())
    if argv is None:
        _skip_final_collections()
    return code


def _collect_less() -> None:
    """A command's imports (typer's pydantic, the kubernetes client, the pipeline) allocate objects
    that all stay alive: the young generation, collected every 700 allocations, walked them again
    and again (~0.05 s of CPU before a check reads the cluster). A run is short: every 10,000."""
    gc.set_threshold(10_000)


def _skip_final_collections() -> None:
    """The interpreter's exit collects garbage over every object still alive, several times: the
    kubernetes client's and pydantic's modules make it ~0.1 s of a check's ~1.5 s. Frozen, those
    objects are left to the process's end; atexit hooks and module teardown still run."""
    gc.freeze()


def _outcome(argv: Sequence[str] | None, env: Environment) -> int:
    name = prog_name(sys.argv[0])
    args = sys.argv[1:] if argv is None else list(argv)
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    document = _json_document(args)
    try:
        return program(args, env, name)
    except NetdoctorError as exc:
        return _fail(env, exc.message, exc.exit_code, exc.hint, document, exc.partial)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.TyperException as exc:  # click's usage errors, vendored by typer
        if isinstance(exc, NoArgsIsHelpError):  # a group without its command: its help, on stdout
            env.stdout.write(exc.format_message() + "\n")
            return ExitCode.USAGE
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx else name
        return _fail(env, exc.format_message(), ExitCode.USAGE, f"see '{where} --help'", document)
    except (KeyboardInterrupt, typer.Abort):
        return _fail(env, "interrupted", ExitCode.INTERRUPTED, None, document)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _json_document(args: Sequence[str]) -> str | None:
    """The schema of the document `args` ask for with `-o json`, if any: a command that fails
    (even on its own arguments) still prints one, with the error."""
    words = tuple(a for a in args[:2] if not a.startswith("-"))
    schema = next((v for k, v in JSON_DOCUMENTS.items() if words[: len(k)] == k), None)
    pairs = zip(args, [*args[1:], ""])
    wants_json = any((a in ("-o", "--output") and b == "json") or a in ("-ojson", "--output=json") for a, b in pairs)
    return schema if wants_json else None


def _fail(env: Environment, message: str, code: int, hint: str | None = None, document: str | None = None,
          partial: dict | None = None) -> int:
    if document is not None:
        from netdoctor import schemas

        env.stdout.write(schemas.dump(schemas.error_document(document, code, message, hint, partial)))
        env.stdout.flush()
    env.stderr.write(f"error: {message}\n")
    if hint:
        env.stderr.write(f"hint: {hint}\n")
    env.stderr.flush()
    return int(code)

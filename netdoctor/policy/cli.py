"""`netdoctor policy …`: who may talk to whom under the NetworkPolicies, offline or live.

Mounted by netdoctor/cli.py as `netdoctor policy`. Reads objects from files (-f, via
netdoctor.manifests) or the cluster (policy/sources.py), asks the engine, hands the finished result
to policy/render.py and returns the exit code: matrix 0; explain 0 when the flow is allowed,
1 when it is denied; 2 for bad input, which for matrix includes a policy the API server would
refuse and input without objects. Warnings about the policies go to stderr.
"""

from __future__ import annotations

import ipaddress
from enum import Enum
from typing import TYPE_CHECKING, List, Optional

import typer

from netdoctor import schemas
from netdoctor.environment import Environment
from netdoctor.errors import InputFileError, UsageError
from netdoctor.exitcodes import ExitCode, epilog
from netdoctor.manifests import load_paths
from netdoctor.policy import sources

if TYPE_CHECKING:  # the engine is imported by the commands, not at CLI start
    from netdoctor.policy.matrix import PortQuery
    from netdoctor.policy.model import Endpoint, World

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None)  # its help: netdoctor.cli._GROUPS


class Output(str, Enum):
    TEXT = "text"
    JSON = "json"


FILES = typer.Option(
    None, "-f", "--filename", help="Manifest file or directory (repeatable); without it, read the live cluster."
)
KUBECONFIG = typer.Option(None, "--kubeconfig", help="Kubeconfig file (live mode).")
CONTEXT = typer.Option(None, "--context", help="Kubeconfig context (live mode).")


@app.command("matrix", epilog=epilog("netdoctor policy matrix -f manifests/ --port TCP/8080",
                                      "netdoctor policy matrix -n shop -o json"))
def matrix_command(
    ctx: typer.Context,
    files: Optional[List[str]] = FILES,
    ports: Optional[List[str]] = typer.Option(
        None, "--port", help="PROTO/PORT to test (repeatable); default: each destination's containerPorts."
    ),
    namespace: Optional[str] = typer.Option(
        None, "-n", "--namespace", help="Only pods of this namespace (live default: the context's namespace)."
    ),
    all_namespaces: bool = typer.Option(False, "-A", "--all-namespaces", help="Pods of every namespace (files: the default)."),
    output: Output = typer.Option(Output.TEXT, "-o", "--output", help="text or json."),
    kubeconfig: Optional[str] = KUBECONFIG,
    context: Optional[str] = CONTEXT,
) -> int:
    """Every source pod × destination pod × port: allowed or not."""
    env: Environment = ctx.obj
    if namespace and all_namespaces:
        raise UsageError("use either -n/--namespace or -A/--all-namespaces, not both")
    from netdoctor.policy.matrix import compute_matrix, parse_port
    from netdoctor.policy.model import world_from_objects
    from netdoctor.policy.render import matrix_json, render_matrix, render_problems

    queries = [parse_port(p) for p in ports] if ports else None
    if files:
        scope = namespace
        world = world_from_objects(_objects(files))
    else:
        kube = sources.connect(kubeconfig, context, env.environ)
        scope = None if all_namespaces else namespace or kube.namespace
        world = world_from_objects(sources.live_objects(kube, None if scope is None else [scope]))
    render_problems(env.error_console(), world.problems)
    _refuse_invalid(world.problems)
    matrix = compute_matrix(world, [p for p in world.pods if scope in (None, p.namespace)], queries)
    if output is Output.JSON:
        env.stdout.write(schemas.dump(matrix_json(matrix)))
    else:
        render_matrix(env.console(), matrix)
    return ExitCode.OK


@app.command("explain", epilog=epilog(
    "netdoctor policy explain --from shop/frontend-x --to shop/api-y --port TCP/http -f manifests/"))
def explain_command(
    ctx: typer.Context,
    source: str = typer.Option(..., "--from", help="NS/POD (or POD, or an IP address) the flow starts at."),
    destination: str = typer.Option(..., "--to", help="NS/POD (or POD, or an IP address) the flow goes to."),
    port: str = typer.Option(..., "--port", help="PROTO/PORT, e.g. TCP/8080, UDP/53 or TCP/http."),
    files: Optional[List[str]] = FILES,
    kubeconfig: Optional[str] = KUBECONFIG,
    context: Optional[str] = CONTEXT,
) -> int:
    """The reasoning for one flow, egress at the source and ingress at the destination."""
    env: Environment = ctx.obj
    from netdoctor.policy.engine import decide
    from netdoctor.policy.matrix import parse_port
    from netdoctor.policy.model import DEFAULT_NAMESPACE, world_from_objects
    from netdoctor.policy.render import render_explain, render_problems

    query = parse_port(port)
    if files:
        default_namespace = DEFAULT_NAMESPACE
        world = world_from_objects(load_paths(files))
    else:
        kube = sources.connect(kubeconfig, context, env.environ)
        default_namespace = kube.namespace
        wanted = {_namespace_of(ref, default_namespace) for ref in (source, destination)} - {None}
        world = world_from_objects(sources.live_objects(kube, wanted))
    src = _endpoint(world, source, default_namespace)
    dst = _endpoint(world, destination, default_namespace)
    verdict = decide(world, src, dst, query.protocol, _port_number(query, dst))
    render_problems(env.error_console(), world.problems)
    render_explain(env.console(), verdict)
    return ExitCode.OK if verdict.allowed else ExitCode.CHECK_FAILED


def _objects(files: list[str]) -> list[dict]:
    """The objects of the -f files; none at all (an empty file, a directory without YAML) is bad input."""
    objects = load_paths(files)
    if not objects:
        raise InputFileError(f"no Kubernetes objects in {', '.join(files)}")
    return objects


def _refuse_invalid(problems) -> None:
    """Policies the API server would refuse (a bad CIDR, port 0, endPort below port) are bad
    input: the matrix would silently leave them out. Each was listed as a warning already."""
    from netdoctor.policy.model import ProblemKind
    from netdoctor.policy.render import MATRIX_SCHEMA, problem_json

    invalid = [p for p in problems if p.kind is ProblemKind.INVALID]
    if invalid:
        first = invalid[0]
        raise InputFileError(f"{len(invalid)} invalid NetworkPolicy field(s), first: {first.policy} {first.field}: "
                             f"{first.message}", hint="fix the policies listed above; the API server would refuse them",
                             partial={"schema": MATRIX_SCHEMA, "state": "error",
                                      "problems": [problem_json(p) for p in problems]})


def _namespace_of(ref: str, default_namespace: str) -> str | None:
    if _ip(ref):
        return None
    return ref.split("/", 1)[0] if "/" in ref else default_namespace


def _ip(ref: str):
    try:
        return ipaddress.ip_address(ref)
    except ValueError:
        return None


def _endpoint(world: World, ref: str, default_namespace: str) -> Endpoint:
    from netdoctor.policy.model import External

    ip = _ip(ref)
    if ip is not None:
        return External(ip)
    parts = ref.split("/")
    if len(parts) > 2 or not all(parts):
        raise UsageError(f"invalid pod {ref!r}: expected NS/POD, POD or an IP address")
    key = ref if len(parts) == 2 else f"{default_namespace}/{ref}"
    pod = world.pod(key)
    if pod is None:
        namespace = key.split("/")[0]
        known = [p.name for p in world.pods if p.namespace == namespace]
        hint = f"pods in {namespace}: {', '.join(known[:8])}" if known else f"no pods known in namespace {namespace}"
        raise UsageError(f"pod {key} not found", hint=hint)
    return pod


def _port_number(query: PortQuery, destination: Endpoint) -> int:
    from netdoctor.policy.model import Pod

    number = query.resolve(destination) if isinstance(destination, Pod) else query.port
    if not isinstance(number, int):
        raise UsageError(f"{destination.key} declares no {query.protocol.value} port named {query.port!r}")
    return number

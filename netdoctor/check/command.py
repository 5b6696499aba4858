"""`netdoctor check` and `netdoctor cleanup`: wire the pipeline target → resolve → plan → probe
→ judge → report, and map its verdict to an exit code. Registered on the app by netdoctor.cli.

Everything but typer and the environment is imported inside the commands: `netdoctor --help` and
`check --help` import neither the pipeline's vocabulary nor the cluster wrapper
(tests/unit/test_cold_start.py).
The cluster connection comes from `env.connect` when a test injects one. Every API call is bounded
by --request-timeout; Ctrl-C while probing ends the execs in flight at once (see
`_execs_end_on_interrupt`), and the probe fleet's cleanup is bounded too.

Bad input is refused before anything is created in the cluster: the syntax of every argument before
connecting, then what only the cluster can tell (--port names a port of the Service, --nodes and
--capture-namespace exist), then the --pcap directory. When RBAC or admission refuses the probes,
the layers the API objects alone can judge are still reported, then the error (exit 4).
"""

from __future__ import annotations

import importlib
import math
import re
import signal
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

import typer

from netdoctor.check import DEFAULT_MAX_NODES
from netdoctor.cluster import REQUEST_TIMEOUT
from netdoctor.environment import Environment
from netdoctor.errors import ClusterError, ProbeError, UsageError
from netdoctor.exitcodes import ExitCode

if TYPE_CHECKING:
    from netdoctor.model import CaptureMode, Plan, State


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
MIN_TIMEOUT, MAX_TIMEOUT = 0.1, 300.0  # --timeout: seconds per network probe
REQUEST_TIMEOUT_HELP = "Give up on an API call after this long: seconds, or kubectl's 30s, 1m"
PROBE_DEADLINE_VARIABLE = "NETDOCTOR_PROBE_DEADLINE"
MAX_MAX_NODES = 100  # --max-nodes: beyond it, say --nodes all
# What `_probe_and_judge` imports, in the order it needs them; then dnspython (~0.07 s), which the
# DNS steps use once the probes run: the probes start without waiting for it.
_STAGES = ("netdoctor.probe.runner", "netdoctor.report.progress", "netdoctor.judge.coverage", "netdoctor.judge.paths",
           "netdoctor.judge.verdict", "dns.message", "dns.resolver")


def _connect(env: Environment, kubeconfig: str | None, context: str | None, request_timeout: str):
    seconds = _request_timeout(request_timeout)
    if env.connect is not None:
        return env.connect(kubeconfig, context)
    from netdoctor.cluster.kube import Kube

    return Kube.connect(kubeconfig, context, request_timeout=seconds)


def _request_timeout(value: str) -> float:
    """--request-timeout as kubectl spells it (30, 30s, 1m, 500ms), but never 0: every call is bounded."""
    match = _DURATION.match(value.strip())
    seconds = float(match[1]) * _UNIT[match[2]] if match else math.nan
    if not seconds > 0:
        raise UsageError(f"--request-timeout {value!r}: use a positive duration such as 30, 30s or 1m")
    return seconds


@contextmanager
def _execs_end_on_interrupt(kube) -> Iterator[None]:
    """While probing, Ctrl-C and SIGTERM first tell the cluster wrapper to end every exec (steps and
    captures run in worker threads that would otherwise wait out a hung API server), then
    interrupt as before; the probe fleet's bounded cleanup follows."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)
                if callable(signal.getsignal(signum))}

    def interrupt(signum, frame):
        kube.stop_execs()
        previous[signum](signum, frame)

    for signum in previous:
        signal.signal(signum, interrupt)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def check(
    ctx: typer.Context,
    targets: Optional[list[str]] = typer.Argument(None, metavar="TARGET...",
                                                  help="svc/NAME, NAME (a Service), pod/NAME or deploy/NAME; several "
                                                  "share one set of probes"),
    namespace: Optional[str] = typer.Option(None, "-n", "--namespace", help="Namespace of the target"),
    all_services: bool = typer.Option(False, "--all", help="Every Service of the namespace (-A: of every namespace)"),
    all_namespaces: bool = typer.Option(False, "-A", "--all-namespaces", help="With --all: every namespace"),
    selector: Optional[str] = typer.Option(None, "-l", "--selector", help="With --all: only Services with these labels"),
    context: Optional[str] = typer.Option(None, "--context", help="kubeconfig context"),
    kubeconfig: Optional[str] = typer.Option(None, "--kubeconfig", metavar="FILE", help="Path to the kubeconfig file"),
    source: Optional[str] = typer.Option(None, "--from", metavar="pod/NAME|deploy/NAME", help="pod/NAME or deploy/NAME, or NS/deploy/NAME in another "
                                         "namespace: the client whose view matters"),
    source_namespace: Optional[str] = typer.Option(None, "--from-namespace",
                                                   help="Namespace of --from (default: the target's)"),
    port: Optional[str] = typer.Option(None, "--port", help="Service port: number, name or PROTO/NUM (UDP/53); "
                                       "the container port for a target without a Service"),
    timeout: float = typer.Option(3.0, "--timeout", metavar="SECONDS", help=f"Seconds per network probe ({MIN_TIMEOUT:g} to "
                                  f"{MAX_TIMEOUT:g})"),
    output: str = typer.Option("text", "-o", "--output", metavar="text|json|markdown|junit",
                               help="text, json, markdown or junit"),
    image: Optional[str] = typer.Option(None, "--image", help="Probe image (needs bash; netshoot by default)"),
    nodes: Optional[str] = typer.Option(None, "--nodes", help="Comma-separated nodes to probe from besides the source's, "
                                        "the backends' and the DNS pods', or 'all' (default: a sample, see --max-nodes)"),
    max_nodes: int = typer.Option(DEFAULT_MAX_NODES, "--max-nodes", help="Nodes in the default sample: the source's, "
                                  "the backends', the DNS pods', then one per distinct zone, pool, kernel and runtime"),
    keep: bool = typer.Option(False, "--keep", help="Leave the probes running and print how to exec into them"),
    capture: str = typer.Option("auto", "--capture", metavar="auto|strict|off", help="Packet capture at every hop: auto (go on blind where "
                                "the cluster forbids it), strict (fail instead) or off"),
    capture_namespace: Optional[str] = typer.Option(None, "--capture-namespace",
                                                    help="Namespace for the hostNetwork capture probes (default: the source's)"),
    pcap: Optional[Path] = typer.Option(None, "--pcap", metavar="DIR", help="Write a pcap per capture point into this directory",
                                        file_okay=False),
    plan_only: bool = typer.Option(False, "--plan", help="Print what would be created and run; create nothing"),
    request_timeout: str = typer.Option(f"{REQUEST_TIMEOUT:g}s", "--request-timeout", metavar="SECONDS",
                                        help=REQUEST_TIMEOUT_HELP),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Show every check's evidence and log"),
    progress: str = typer.Option("auto", "--progress", metavar="auto|plain|none",
                                 help="Progress on stderr: live on a terminal (auto), one line per finished layer "
                                      "(plain: auto's choice off a terminal), or none"),
    bundle: Optional[Path] = typer.Option(None, "--bundle", help="Write FILE.tar.gz for the incident channel: the "
                                          "reports, pcaps, node inventories, conntrack and API objects", dir_okay=False),
) -> int:
    """Find where a packet from the source to TARGET is lost, layer by layer, and why. Several
    targets (or --all) run on one shared set of probes and end with a summary table."""
    from netdoctor.check.target import parse_namespace
    from netdoctor.model import CaptureMode
    from netdoctor.report.render import FORMATS

    env: Environment = ctx.obj
    if output not in FORMATS:
        raise UsageError(f"unknown output format {output!r}; use one of {', '.join(FORMATS)}")
    mode = _capture_mode(capture)
    progress_mode = _progress_mode(progress)
    if pcap is not None and mode is CaptureMode.OFF:
        raise UsageError("--pcap needs packet capture; drop --capture off")
    _check_timeout(timeout)
    _check_target_choice(targets or [], namespace, all_services, all_namespaces, selector)
    if bundle is not None:
        _bundle_path(bundle)
    requests = [_request(t, namespace, source, source_namespace, port) for t in targets or []]
    choice = _node_choice(nodes, max_nodes)
    requests = [replace(r, nodes=choice) for r in requests]
    if capture_namespace is not None:
        parse_namespace(capture_namespace, "--capture-namespace")
    if all_services and namespace is not None:
        parse_namespace(namespace, "-n")
    decoding = _decoder_process(ctx, mode, plan_only)
    from netdoctor import catalog
    from netdoctor.check import plan
    from netdoctor.check import resolve

    checks = catalog.load()
    kube = _connect(env, kubeconfig, context, request_timeout)
    if not plan_only:
        _preload_stages()
    if all_services:
        from netdoctor.check.many import all_services as listed

        found = listed(kube, None if all_namespaces else namespace or kube.namespace, selector)
        requests = [replace(_request(f"svc/{ref.name}", ref.namespace, source, source_namespace, port), nodes=choice)
                    for ref in found]
    if len(requests) > 1:
        return _check_many(env, kube, requests, checks, choice, capture_namespace, plan.Options(
            nodes=choice, capture=mode, capture_namespace=capture_namespace), plan_only, pcap, output, verbose,
            runner_options=dict(timeout=timeout, image=image, keep=keep), progress_mode=progress_mode, bundle=bundle,
            decoding=decoding)
    request = requests[0]
    started = time.monotonic()
    started_at = datetime.now(timezone.utc)
    facts = resolve.resolve(kube, request)
    _check_nodes(facts, choice)
    if capture_namespace is not None:
        _check_namespace(kube, capture_namespace, "--capture-namespace")
    options = plan.Options(nodes=choice, capture=mode, capture_namespace=capture_namespace)
    the_plan = plan.build(facts, options)
    if plan_only:
        _print_plan(env, the_plan)
        return ExitCode.OK
    if pcap is not None:
        _pcap_directory(pcap)
    _preload_report(output)
    with _execs_end_on_interrupt(kube):
        report, result = _probe_and_judge(env, kube, the_plan, facts, checks, timeout, image, keep, started,
                                          started_at, output, verbose, progress_mode, decoding)
    from netdoctor.report.render import render

    render(report, output, env, verbose)
    for line in result.kept:
        env.stderr.write(f"kept probe: {line}\n")
    for fallback in result.owner_fallbacks:
        env.stderr.write(f"note: {fallback}\n")
    if pcap is not None:
        _write_pcaps(env, pcap, result.captures)
    if bundle is not None:
        _write_bundle(env, kube, bundle, [(report, facts, result.captures)])
    return _exit_code(report.state)


def _bundle_path(path: Path) -> None:
    """--bundle FILE.tar.gz: a gzipped tar in a directory that exists and can be written, checked
    before anything is created."""
    import os

    if not path.name.endswith((".tar.gz", ".tgz")):
        raise UsageError(f"--bundle {path}: name the file FILE.tar.gz (a gzipped tar)")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise UsageError(f"--bundle {path}: cannot write in {parent}")


def _write_bundle(env: Environment, kube, path: Path, judged, summary: str = "") -> None:
    """The reports, captures and API objects of each target, in one file (report.bundle)."""
    from netdoctor.check import bundle as api_objects
    from netdoctor.report import bundle

    parts = []
    for report, facts, captures in judged:
        found, unread = api_objects.objects(kube, facts)
        parts.append(bundle.Part(report, tuple(captures), tuple(found), tuple(unread)))
    try:
        count = bundle.write(path, parts, summary)
    except OSError as exc:
        raise UsageError(f"--bundle {path}: cannot write: {exc.strerror or exc}") from None
    env.stderr.write(f"bundle: {path} ({count} files)\n")


def _check_target_choice(targets: list[str], namespace, all_services: bool, all_namespaces: bool, selector) -> None:
    """TARGET… or --all (with -n or -A, optionally -l), never both, never neither."""
    if all_services and targets:
        raise UsageError("give TARGETs or --all, not both")
    if not all_services and not targets:
        raise UsageError("missing TARGET: give one or more (svc/NAME, pod/NAME, deploy/NAME) or --all")
    if not all_services and (all_namespaces or selector is not None):
        raise UsageError(f"{'-A' if all_namespaces else '-l'} selects Services for --all; add --all")
    if all_namespaces and namespace is not None:
        raise UsageError("use -n NAMESPACE or -A, not both")


def _check_many(env, kube, requests, checks, choice, capture_namespace, options, plan_only, pcap, output, verbose,
                runner_options, progress_mode, bundle=None, decoding=None) -> int:
    """Several targets on shared probes: each target's report, then the summary; exit 1 when any
    target fails (else 4 when one could not be judged)."""
    from netdoctor.check import many, plan
    from netdoctor.probe import runner
    from netdoctor.report.progress import Progress
    from netdoctor.report.render import render_many

    resolved = many.resolve_all(kube, requests)
    for facts, _ in resolved:
        _check_nodes(facts, choice)
    if capture_namespace is not None:
        _check_namespace(kube, capture_namespace, "--capture-namespace")
    targets = [many.Target(facts, plan.build(facts, options), began) for facts, began in resolved]
    if plan_only:
        for t in targets:
            env.stdout.write(f"== {t.facts.namespace}/{t.facts.target}\n")
            _print_plan(env, t.plan)
        return ExitCode.OK
    if pcap is not None:
        _pcap_directory(pcap)
    _preload_report(output)
    run_options = runner.RunOptions(deadline=_probe_deadline(env), workers=many.STEP_WORKERS,
                                    **{k: v for k, v in runner_options.items() if v is not None})
    steps = runner.shared_steps(tuple(runner.Job(t.plan, t.facts) for t in targets))
    with _execs_end_on_interrupt(kube), Progress(env, progress_mode, steps) as progress:
        reports, results = many.probe_and_judge(kube, targets, checks, run_options, progress.step_done, decoding)
    render_many(reports, output, env, verbose)
    for line in results[0].kept if results else ():
        env.stderr.write(f"kept probe: {line}\n")
    for fallback in results[0].owner_fallbacks if results else ():
        env.stderr.write(f"note: {fallback}\n")
    if pcap is not None:
        for t, result in zip(targets, results):
            _write_pcaps(env, _pcap_directory(pcap / f"{t.facts.namespace}_{t.facts.target.kind.value}_"
                                              f"{t.facts.target.name}"), result.captures)
    if bundle is not None:
        from netdoctor.report import many as summary

        _write_bundle(env, kube, bundle, [(r, t.facts, result.captures) for r, t, result in zip(reports, targets, results)],
                      "\n".join(summary.table_lines(reports)) + "\n")
    from netdoctor.model import State

    states = {r.state for r in reports}
    return _exit_code(State.FAIL if State.FAIL in states else State.ERROR if State.ERROR in states else State.PASS)


def _decoder_process(ctx: typer.Context, mode: CaptureMode, plan_only: bool):
    """With capture on, the decoder process (netdoctor.probe.decoding) starts once the arguments
    are checked: it imports scapy on another core while this one imports the cluster client, reads
    the API and starts the probes. The command's context ends it."""
    from netdoctor.model import CaptureMode

    if mode is CaptureMode.OFF or plan_only:
        return None
    from netdoctor.probe.decoding import DecoderProcess

    return ctx.with_resource(DecoderProcess())


def _preload_stages() -> None:
    """The probe and judge stages are imported in a thread while the target is resolved, the
    process mostly waiting on the API server then; dnspython while the probes start."""
    threading.Thread(target=_import_all, args=(_STAGES,), name="stage import", daemon=True).start()


def _import_all(modules: tuple[str, ...]) -> None:
    for module in modules:
        importlib.import_module(module)


def _preload_report(output: str) -> None:
    """The report's renderer is imported while the probes run (the process mostly waits then)."""
    from netdoctor.report.render import preload

    threading.Thread(target=preload, args=(output,), name="renderer import", daemon=True).start()


def _capture_mode(value: str) -> CaptureMode:
    from netdoctor.model import CaptureMode

    try:
        return CaptureMode(value)
    except ValueError:
        raise UsageError(f"unknown capture mode {value!r}; use auto, strict or off") from None


def _progress_mode(value: str):
    from netdoctor.report.progress import ProgressMode

    try:
        return ProgressMode(value)
    except ValueError:
        raise UsageError(f"unknown progress mode {value!r}; use auto, plain or none") from None


def _write_pcaps(env: Environment, directory: Path, captures) -> None:
    from netdoctor.probe import pcap

    for capture in captures:
        if capture.pcap and capture.inventory:
            prefix = capture.point.replace(" ", "-")
            try:
                written = pcap.write_per_interface(capture.pcap, capture.inventory.names(), directory, prefix)
            except OSError as exc:
                raise UsageError(f"cannot write pcaps to {directory}: {exc.strerror or exc}") from None
            env.stderr.write(f"pcap: {capture.point}: {len(written)} files in {directory}\n")


def _request(target, namespace, source, source_namespace, port):
    """What the user asked for, every name and the port checked for syntax before the cluster is asked."""
    from netdoctor.check.resolve import Request
    from netdoctor.check.target import parse_namespace, parse_port, parse_source, parse_target

    if namespace is not None:
        parse_namespace(namespace, "-n")
    if source_namespace is not None and source is None:
        raise UsageError("--from-namespace needs --from")
    ref = parse_source(source) if source else None
    if ref and source_namespace is not None:
        parse_namespace(source_namespace, "--from-namespace")
        if ref.namespace not in (None, source_namespace):
            raise UsageError(f"--from {source} names namespace {ref.namespace}, --from-namespace {source_namespace}: "
                             f"give one")
        ref = replace(ref, namespace=source_namespace)
    return Request(parse_target(target), namespace, ref, parse_port(port) if port is not None else None)


def _check_timeout(timeout: float) -> None:
    if not MIN_TIMEOUT <= timeout <= MAX_TIMEOUT:  # also refuses nan
        raise UsageError(f"--timeout {timeout:g}: use a number of seconds from {MIN_TIMEOUT:g} to {MAX_TIMEOUT:g}")


def _node_choice(nodes: str | None, max_nodes: int) -> NodeChoice:
    """--nodes (names, or all) and --max-nodes, checked before the cluster is asked."""
    from netdoctor.check.nodes import NodeChoice

    if not 1 <= max_nodes <= MAX_MAX_NODES:
        raise UsageError(f"--max-nodes {max_nodes}: use a number from 1 to {MAX_MAX_NODES} (or --nodes all)")
    if nodes is None:
        return NodeChoice(max_nodes=max_nodes)
    if nodes.strip() == "all":
        return NodeChoice(all=True)
    names = tuple(n.strip() for n in nodes.split(","))
    if not all(names):
        raise UsageError(f"--nodes {nodes!r}: give node names separated by commas, e.g. --nodes node-1,node-2, or all")
    return NodeChoice(names=names)


def _check_nodes(facts, choice: NodeChoice) -> None:
    """--nodes needs the nodes to be readable (resolve refused the names that are not nodes)."""
    if (choice.names is None and not choice.all) or facts.nodes:
        return
    why = next((u.why for u in facts.unread if u.what == "nodes"), "the cluster lists no node")
    raise ClusterError(f"--nodes: cannot check the node names: {why}")


def _check_namespace(kube, name: str, option: str) -> None:
    """The namespace must exist (the error lists those that do, or says they cannot be listed). One
    the user may not read is left to the probes' creation to judge."""
    from netdoctor.cluster.kube import Forbidden, NotFound

    try:
        kube.get_namespace(name)
    except Forbidden:
        return
    except NotFound:
        try:
            known = ", ".join(sorted(o["metadata"]["name"] for o in kube.list_objects("Namespace")))
        except ClusterError as exc:
            known = f"and the namespaces cannot be listed: {exc.message}"
        raise UsageError(f"{option} {name!r}: no such namespace ({known or 'none'})") from None


def _pcap_directory(directory: Path) -> Path:
    """--pcap DIR: created if missing, refused if it is a file or cannot be written, before any probe."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise UsageError(f"--pcap {directory}: cannot write there: {exc.strerror or exc}") from None
    return directory


def _probe_and_judge(env, kube, the_plan, facts, checks, timeout, image, keep, started, started_at, output, verbose,
                     progress_mode, decoding):
    """Probe and judge. When the probes cannot run, the layers that need none (from the API
    objects) are still reported before the error, which ends the command with its exit code."""
    from netdoctor.probe import runner
    from netdoctor.judge import coverage, paths
    from netdoctor.judge.verdict import judge
    from netdoctor.model import Evidence
    from netdoctor.cluster.kube import Forbidden
    from netdoctor.probe.fleet import ProbeLaunchError
    from netdoctor.report.progress import Progress

    options = runner.RunOptions(timeout=timeout, keep=keep, deadline=_probe_deadline(env),
                                **({"image": image} if image else {}))
    with Progress(env, progress_mode, the_plan.steps) as progress:
        try:
            result = runner.run(kube, the_plan, facts, options, progress.step_done, coverage.uncovered, paths.unsettled,
                                decoding)
        except (ProbeLaunchError, Forbidden) as exc:
            failure = exc if isinstance(exc, ProbeLaunchError) else _refused(exc, the_plan)
            observations = runner.observe_without_probes(kube, the_plan, facts, options, failure.message)
            partial = judge(Evidence(facts, the_plan, observations), checks, time.monotonic() - started, started_at)
            progress.stop()
            if output == "json":  # one document: the report goes out with the error, in cli.main
                from netdoctor.report.json import document

                failure.partial = document(partial)
            else:
                from netdoctor.report.render import render

                render(partial, output, env, verbose)
            raise failure from None
    evidence = Evidence(facts, the_plan, result.observations, result.captures, result.probes)
    return judge(evidence, checks, time.monotonic() - started, started_at), result


def _probe_deadline(env: Environment) -> int | None:
    """NETDOCTOR_PROBE_DEADLINE (seconds): a shorter life for the probes and their owner, for tests
    of what the cluster cleans up by itself; unset, the deadline follows --timeout."""
    value = env.environ.get(PROBE_DEADLINE_VARIABLE)
    if value is None:
        return None
    if not value.isdigit() or int(value) == 0:
        raise UsageError(f"{PROBE_DEADLINE_VARIABLE}={value!r}: use a whole number of seconds above 0")
    return int(value)


def _refused(exc, the_plan: Plan) -> ProbeError:
    """RBAC refused to create the run's objects (a read-only user): the probes cannot run (exit 4),
    and the hint says which rights they need and which layers that costs."""
    layers = sorted({step.layer.value for step in the_plan.steps if step.probe is not None})
    cost = f"without probes these layers cannot run: {', '.join(layers)}" if layers else ""
    return ProbeError(f"the probes cannot be created: {exc.server_message}",
                      hint="; ".join(filter(None, (exc.hint, cost))))


def _print_plan(env: Environment, the_plan: Plan) -> None:
    out = env.stdout
    from netdoctor.report import sample

    out.write("nodes sampled:\n")
    for node in the_plan.sample:
        out.write(f"  {sample.line(node)}\n")
    out.write("probes to create:\n")
    for p in the_plan.probes:
        who = f", impersonating {p.impersonates}" if p.impersonates else ""
        what = ", hostNetwork, captures the node" if p.purpose.value == "node-capture" else (
            ", captures its eth0" if p.capture else "")
        out.write(f"  {p.role}: namespace {p.namespace}, node {p.node or '(scheduler)'}{who}{what}\n")
    out.write("steps:\n")
    for s in the_plan.steps:
        out.write(f"  {s.check_id} [{s.layer.value}] {s.title or s.key}" + (" (expect: blocked)" if s.expect.value == "blocked" else "") + "\n")
    for note in the_plan.notes:
        out.write(f"note: {note}\n")


def _exit_code(state: State) -> int:
    from netdoctor.model import State

    if state is State.FAIL:
        return ExitCode.CHECK_FAILED
    if state is State.ERROR:
        return ExitCode.PROBES
    return ExitCode.OK


def cleanup(
    ctx: typer.Context,
    namespace: Optional[str] = typer.Option(None, "-n", "--namespace", help="Namespace to clean"),
    all_namespaces: bool = typer.Option(False, "-A", "--all-namespaces", help="Clean every namespace"),
    context: Optional[str] = typer.Option(None, "--context", help="kubeconfig context"),
    kubeconfig: Optional[str] = typer.Option(None, "--kubeconfig", help="Path to the kubeconfig file"),
    run: Optional[str] = typer.Option(None, "--run", help="Only what this run left (the ID an interrupted check names)"),
    force: bool = typer.Option(False, "--force", help="Also delete live runs (their owner has not expired yet)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be deleted; delete nothing"),
    request_timeout: str = typer.Option(f"{REQUEST_TIMEOUT:g}s", "--request-timeout", metavar="SECONDS",
                                        help=REQUEST_TIMEOUT_HELP),
) -> int:
    """Remove the probe pods and owners that expired netdoctor runs left behind. A run is live until
    its owner expires (the probes' deadline): a check may still be using it, so it is left alone
    unless --force."""
    env: Environment = ctx.obj
    if namespace and all_namespaces:
        raise UsageError("use -n NAMESPACE or -A, not both")
    if run is not None and not _LABEL_VALUE.match(run):
        raise UsageError(f"--run {run!r} is not a run ID (the label value netdoctor.io/run)")
    from netdoctor.probe.fleet import cleanup_leftovers

    kube = _connect(env, kubeconfig, context, request_timeout)
    result = cleanup_leftovers(kube, None if all_namespaces else (namespace or kube.namespace), run, force=force,
                               dry_run=dry_run)
    for note in result.unlisted:
        env.stderr.write(f"note: cannot list {note}\n")
    for ref in result.deleted:
        env.stdout.write(f"{'would delete' if dry_run else 'deleted'} {ref}\n")
    for left in result.spared:
        env.stdout.write(f"left live run {left.run_id} in {left.namespace} ({len(left.objects)} objects, live until "
                         f"{left.expires:%Y-%m-%dT%H:%M:%SZ}): --force deletes it\n")
    if not result.deleted and not result.spared:
        env.stdout.write("nothing to clean up\n")
    return ExitCode.OK

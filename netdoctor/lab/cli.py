"""`netdoctor lab …`: build, break, fix and tear down a lab cluster.

Commands only parse options and print; the work is in `netdoctor.lab.lifecycle`. The lab needs
root; every command that touches one says so in one line when it can't.
"""

from __future__ import annotations

from typing import List, Optional

import typer
from rich.table import Table

from netdoctor.environment import Environment
from netdoctor.lab import lifecycle
from netdoctor.lab.state import LabConfig

app = typer.Typer(help="A disposable cluster made of real Linux networking.", no_args_is_help=True)

NameOption = typer.Option(None, "--name", help="Which lab (default: the only one, or 'demo').")


@app.command()
def up(
    ctx: typer.Context,
    name: str = typer.Option("demo", "--name", help="Lab name: 1-8 lowercase letters and digits."),
    nodes: int = typer.Option(2, "--nodes", help="Number of nodes."),
    overlay: str = typer.Option("vxlan", "--overlay", help="vxlan (flannel-like) or routed."),
    policy: str = typer.Option(
        "drop", "--policy",
        help="NetworkPolicy: drop denied packets (Calico, Cilium), reject them with ICMP port unreachable "
             "from the node (kube-router), or off (flannel). 'enforce' means drop."),
    scenario: str = typer.Option("shop", "--scenario", help="A built-in scenario name or a manifest file."),
) -> int:
    """Build a lab and load a scenario; prints where its kubeconfig is."""
    env: Environment = ctx.obj
    result = lifecycle.up(LabConfig(name, nodes, overlay, policy, scenario).validate())
    out = env.console()
    out.print(f"lab [bold]{result.name}[/] is up in {result.seconds:.1f}s: {result.nodes} nodes, "
              f"{result.pods} pods ({result.config.overlay}, policy {result.config.policy})")
    out.print(f"kubeconfig: {result.kubeconfig}")
    out.print(f"  export KUBECONFIG={result.kubeconfig}")
    out.print("  netdoctor check svc/api -n shop")
    out.print(f"  netdoctor lab break kube-proxy-stale --name {result.name}   (netdoctor lab faults lists them)")
    return 0


@app.command()
def down(
    ctx: typer.Context,
    name: Optional[str] = NameOption,
    all_labs: bool = typer.Option(False, "--all", help="Tear down every lab on this machine."),
) -> int:
    """Tear a lab down: processes, namespaces, files."""
    removed = lifecycle.down_all() if all_labs else [lifecycle.down(lifecycle.pick(name))]
    ctx.obj.console().print("\n".join(f"lab {n} removed" for n in removed) or "no lab to remove")
    return 0


@app.command()
def status(ctx: typer.Context, name: Optional[str] = NameOption) -> int:
    """Show the labs on this machine, or one of them."""
    table = Table("lab", "state", "nodes", "overlay", "policy", "faults", "kubeconfig")
    for lab in lifecycle.statuses(name):
        table.add_row(lab.name, lab.state, str(lab.config.nodes), lab.config.overlay, lab.config.policy_mode.value,
                      ", ".join(lab.faults) or "-", str(lab.kubeconfig))
    ctx.obj.console().print(table if table.row_count else "no lab on this machine (netdoctor lab up)")
    return 0


@app.command()
def apply(
    ctx: typer.Context,
    files: List[str] = typer.Option(..., "-f", "--filename", help="Manifest file or directory (repeatable)."),
    name: Optional[str] = NameOption,
) -> int:
    """Create or replace objects (Namespace, Pod, Deployment, Service, NetworkPolicy, ConfigMap)."""
    for line in lifecycle.apply(lifecycle.pick(name), files):
        ctx.obj.console().print(line)
    return 0


@app.command()
def kubeconfig(ctx: typer.Context, name: Optional[str] = NameOption) -> int:
    """Print the path of a lab's kubeconfig."""
    ctx.obj.stdout.write(f"{lifecycle.kubeconfig_path(lifecycle.pick(name))}\n")
    return 0


@app.command(name="break")
def break_(
    ctx: typer.Context,
    fault: str = typer.Argument(..., help="A fault from `netdoctor lab faults`."),
    target: Optional[str] = typer.Option(None, "--target", help="What to break (default: the fault's own)."),
    name: Optional[str] = NameOption,
) -> int:
    """Inject a fault that reproduces a real failure."""
    applied = lifecycle.break_fault(lifecycle.pick(name), fault, target)
    ctx.obj.console().print(f"broke [bold]{applied.name}[/] on {applied.target}: {applied.summary}")
    return 0


@app.command()
def fix(
    ctx: typer.Context,
    fault: Optional[str] = typer.Argument(None, help="The fault to undo (default: all)."),
    name: Optional[str] = NameOption,
) -> int:
    """Undo one fault, or all of them."""
    fixed = lifecycle.fix_faults(lifecycle.pick(name), fault)
    ctx.obj.console().print("\n".join(f"fixed {f}" for f in fixed) or "nothing to fix")
    return 0


@app.command()
def demo(
    ctx: typer.Context,
    fault: str = typer.Option("kube-proxy-stale", "--fault", help="The fault to inject (netdoctor lab faults)."),
    name: str = typer.Option("demo", "--name", help="Lab name."),
) -> int:
    """Build a lab, break it, run `netdoctor check svc/api -n shop` on it, tear it down."""
    env: Environment = ctx.obj
    out = env.console()
    config = LabConfig(name).validate()
    result = lifecycle.up(config)
    try:
        out.print(f"lab {name} is up in {result.seconds:.1f}s; kubeconfig {result.kubeconfig}")
        applied = lifecycle.break_fault(name, fault, None)
        out.print(f"broke [bold]{applied.name}[/] on {applied.target}: {applied.summary}")
        out.print(f"$ netdoctor check svc/api -n shop --kubeconfig {result.kubeconfig}\n")
        code = _run_root(ctx, ["check", "svc/api", "-n", "shop", "--kubeconfig", str(result.kubeconfig)])
    finally:
        lifecycle.down(name)
    out.print(f"\nlab {name} removed; the check exited with {code}")
    return 0


@app.command()
def faults(ctx: typer.Context) -> int:
    """The fault catalog, one line each."""
    table = Table("fault", "layer", "default target", "what breaks")
    for fault in lifecycle.catalog():
        table.add_row(fault.name, fault.layer, fault.default_target, fault.summary)
    ctx.obj.console().print(table)
    return 0


def _run_root(ctx: typer.Context, args: list[str]) -> int:
    """Run another command of the app this lab CLI is registered on (the lab never imports the CLI)."""
    root = ctx.find_root()
    result = root.command.main(args=args, prog_name=root.info_name, standalone_mode=False, obj=ctx.obj)
    return int(result) if isinstance(result, int) else 0

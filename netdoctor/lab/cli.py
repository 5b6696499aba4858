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
from netdoctor.lab.state import LabConfig, ProxyMode

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None)  # its help: netdoctor.cli._GROUPS

NameOption = typer.Option(None, "--name", help="Which lab (default: the only one, or 'demo').")


@app.command()
def up(
    ctx: typer.Context,
    name: str = typer.Option("demo", "--name", help="Lab name: 1-8 lowercase letters and digits."),
    nodes: int = typer.Option(2, "--nodes", help="Number of nodes."),
    cni: str = typer.Option(
        "flannel", "--cni",
        help="The CNI dialect: flannel (cni0 bridge, flannel.1), calico (cali veths, /32 routes, proxy-ARP "
             "gateway, vxlan.calico or BGP-style routes) or cilium (lxc veths, cilium_host, cilium_vxlan, "
             "Services translated at the socket, policy on the lxc devices)."),
    overlay: str = typer.Option("vxlan", "--overlay", help="vxlan (the CNI's VXLAN device) or routed (plain routes)."),
    proxy: Optional[str] = typer.Option(
        None, "--proxy",
        help="What translates Service IPs: kube-proxy's nftables or iptables mode, or none (the CNI does: "
             "cilium only). Default: nftables, none for cilium."),
    policy: str = typer.Option(
        "drop", "--policy",
        help="NetworkPolicy ('enforce' means drop): drop denied packets, reject them with ICMP (the node's "
             "port unreachable as kube-router sends it, Calico's Reject; Cilium's 'packet filtered', for "
             "egress only), or off."),
    scenario: str = typer.Option("shop", "--scenario", help="A built-in scenario name or a manifest file."),
    ghost_nodes: int = typer.Option(0, "--ghost-nodes", help="Nodes that exist only in the API (Ready, zones and "
                                    "pools, virtual-kubelet taint: no probe lands there)."),
    ghost_pods: int = typer.Option(0, "--ghost-pods", help="Pods that exist only in the API, on the ghost nodes, "
                                   "in ghost-NN namespaces."),
    ghost_policies: int = typer.Option(0, "--ghost-policies", help="NetworkPolicies in the ghost namespaces."),
) -> int:
    """Build a lab and load a scenario; prints where its kubeconfig is."""
    env: Environment = ctx.obj
    result = lifecycle.up(LabConfig(name, nodes, overlay, policy, scenario, cni, proxy or "", ghost_nodes, ghost_pods,
                                    ghost_policies).validate())
    out = env.console()
    config = result.config
    out.print(f"lab [bold]{result.name}[/] is up in {result.seconds:.1f}s: {result.nodes} nodes, "
              f"{result.pods} pods ({config.cni} {config.overlay}, {_proxy_words(config)}, policy {config.policy})")
    if config.ghost_nodes or config.ghost_pods or config.ghost_policies:
        out.print(f"ghosts (API only): {config.ghost_nodes:,} nodes, {config.ghost_pods:,} pods, "
                  f"{config.ghost_policies:,} policies")
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
    table = Table("lab", "state", "nodes", "cni", "overlay", "proxy", "policy", "faults", "kubeconfig")
    for lab in lifecycle.statuses(name):
        config = lab.config
        table.add_row(lab.name, lab.state, str(config.nodes), config.cni_dialect.value, config.overlay,
                      config.proxy_mode.value, config.policy_mode.value, ", ".join(lab.faults) or "-",
                      str(lab.kubeconfig))
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
    if not applied.settled:
        ctx.obj.console().print("note: its effects are still settling (pods, endpoints, Service rules)")
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


def _proxy_words(config: LabConfig) -> str:
    if config.proxy_mode is ProxyMode.NONE:
        return "no kube-proxy: Cilium translates Services at the socket"
    return f"kube-proxy {config.proxy_mode.value}"


def _run_root(ctx: typer.Context, args: list[str]) -> int:
    """Run another command of the app this lab CLI is registered on (the lab never imports the CLI)."""
    root = ctx.find_root()
    result = root.command.main(args=args, prog_name=root.info_name, standalone_mode=False, obj=ctx.obj)
    return int(result) if isinstance(result, int) else 0

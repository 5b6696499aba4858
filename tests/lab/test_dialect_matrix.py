"""The hop verdict in every CNI dialect the lab speaks (issue 12): `netdoctor check svc/api -n shop`
on each fault of the catalog × {flannel-vxlan, flannel-routed, calico-vxlan, calico-routed,
cilium-vxlan} × {drop, reject} policy. Each cell asserts the first broken layer, the cause and the
hop where the packet was lost or refused; the healthy shop passes with every hop shown, named in
the dialect's words (cni0/flannel.1, cali…/vxlan.calico, lxc…/cilium_vxlan), with no device the
dialect lacks, and the report's header names the CNI and the Service proxy. A fault a dialect does
not have (an overlay fault on a routed lab) is refused by `lab break` (exit 2).

One lab per (dialect, policy mode), shared by its cells; every fault is fixed and the shop healthy
again before the next. By default a subset runs (SUBSET: the cells where the dialects differ);
NETDOCTOR_FULL_MATRIX=1 runs every cell (.ci/run does, as an extra step). The flannel-vxlan drop
and reject cells are also test_check_faults.py's, run three times there; here each runs once.
"""

from __future__ import annotations

import os
from io import StringIO

import pytest

from netdoctor.cli import main
from netdoctor.environment import Environment
from netdoctor.exitcodes import ExitCode
from netdoctor.lab import lifecycle
from netdoctor.lab.faults import CATALOG
from netdoctor.lab.state import LabConfig

from faultkit import (
    PASSING, PATH_CAUSES, POLICY_HOPS, VERDICTS, WHOLE_PATHS, all_states, assert_lost_at, assert_paths_whole,
    assert_stopped_by_policy, failing, healthy, settle, shown,
)
from labkit import check_json, run_objects, start, unique_name

pytestmark = pytest.mark.lab

FULL = os.environ.get("NETDOCTOR_FULL_MATRIX") == "1"

# dialect -> (cni, overlay)
DIALECTS = {"flannel-vxlan": ("flannel", "vxlan"), "flannel-routed": ("flannel", "routed"),
            "calico-vxlan": ("calico", "vxlan"), "calico-routed": ("calico", "routed"),
            "cilium-vxlan": ("cilium", "vxlan")}
MODES = ("drop", "reject")
OVERLAY_FAULTS = ("overlay-mtu", "overlay-port-blocked")

# The default suite's cells: (dialect, mode) -> faults, where the dialects differ from flannel's
# VXLAN (which test_check_faults.py covers): Cilium's socket-level translation going stale, its
# tunnel blocked, its drops on the lxc devices (an egress deny rejected with "packet filtered", an
# ingress deny silent); Calico's tunnel, its /26 routes, its per-interface reject; the routed
# dialects' routes (and their overlay faults refused). Each lab's healthy shop runs first.
SUBSET = {
    ("cilium-vxlan", "drop"): ("kube-proxy-stale", "overlay-port-blocked", "policy-deny-ingress"),
    ("cilium-vxlan", "reject"): ("policy-egress-dns-blocked", "target-port-wrong"),
    ("calico-vxlan", "reject"): ("overlay-port-blocked", "policy-deny-ingress", "route-missing"),
    ("calico-routed", "drop"): ("route-missing",),
    ("flannel-routed", "drop"): ("route-missing",),
}

# The words each dialect's healthy paths must use, and the devices they must not draw.
DEVICES = {"flannel": (("cni0",), ("cali", "lxc", "cilium_")), "calico": (("cali",), ("cni0", "lxc", "cilium_")),
           "cilium": (("lxc",), ("cni0", "cali", "flannel.1"))}
TUNNELS = {"flannel": "flannel.1", "calico": "vxlan.calico", "cilium": "cilium_vxlan"}
# What translates the Service IP, as the report's header says: (name, mode)
PROXIES = {"flannel": ("kube-proxy", "nftables"), "calico": ("kube-proxy", "nftables"), "cilium": ("cilium", "ebpf")}


def path_cause(dialect: str, fault: str) -> tuple[str, str | None] | None:
    """The key path's hop cause and node in this dialect: flannel's, except where the dialect's
    own data plane names it otherwise."""
    cni, _ = DIALECTS[dialect]
    if cni == "cilium" and fault == "kube-proxy-stale":
        return "service-map-stale", "node-1"  # Cilium's socket-level translation, not kube-proxy
    return PATH_CAUSES[fault]


def exists(dialect: str, fault: str) -> bool:
    return not (DIALECTS[dialect][1] == "routed" and fault in OVERLAY_FAULTS)


HEALTHY = "healthy"


def _cells() -> list[tuple[str, str, str]]:
    """(dialect, mode, fault or HEALTHY), lab by lab: the healthy shop first, then each fault,
    those the dialect lacks included (refused)."""
    chosen = {(d, m): sorted(CATALOG) for d in DIALECTS for m in MODES} if FULL else SUBSET
    cells = []
    for (dialect, mode), faults in chosen.items():
        refused = [] if FULL else [f for f in OVERLAY_FAULTS if not exists(dialect, f)]
        cells += [(dialect, mode, fault) for fault in (HEALTHY, *faults, *refused)]
    return cells


CELLS = _cells()


def test_the_matrix_covers_the_catalog():
    assert set(VERDICTS) == set(CATALOG) == set(PATH_CAUSES) | set(POLICY_HOPS)
    assert all(f in CATALOG for faults in SUBSET.values() for f in faults)


@pytest.fixture(scope="module")
def labs():
    """One lab per (dialect, policy mode), built when a cell first needs it; the previous one is
    torn down then (CELLS run lab by lab), the last with the module."""
    running: dict = {}

    def get(dialect: str, mode: str):
        if (dialect, mode) not in running:
            for each in running.values():
                lifecycle.down(each.name)
            running.clear()
            cni, overlay = DIALECTS[dialect]
            running[(dialect, mode)] = start(LabConfig(unique_name(), overlay=overlay, cni=cni, policy=mode).validate())
        return running[(dialect, mode)]

    yield get
    for each in running.values():
        lifecycle.down(each.name)


def _ids(cases) -> list[str]:
    return ["-".join(case) for case in cases]


@pytest.mark.parametrize("dialect,mode,fault", CELLS, ids=_ids(CELLS))
def test_matrix_cell(labs, dialect, mode, fault):
    lab = labs(dialect, mode)
    if fault == HEALTHY:
        assert_healthy(lab, dialect)
    elif not exists(dialect, fault):
        assert_refused(lab, fault)
    else:
        assert_judged(lab, dialect, mode, fault)


def assert_healthy(lab, dialect: str) -> None:
    """The healthy shop passes, every path delivered through hops named in the dialect's words."""
    code, report, err = check_json(lab)
    assert code == ExitCode.OK, (err, failing(report))
    assert report["state"] == "pass" and all_states(report) <= {"pass", "skip"}, (report["diagnosis"], failing(report))
    cni, overlay = DIALECTS[dialect]
    found = report["cluster"]
    assert (found["cni"]["name"], found["cni"]["overlay"]) == (cni, overlay), found
    assert (found["proxy"]["name"], found["proxy"]["mode"]) == PROXIES[cni], found
    assert_paths_whole(report)
    paths = report["paths"]
    devices = [h["interface"] for p in paths for h in p["hops"]]
    must, never = DEVICES[cni]
    assert all(any(d.startswith(word) for d in devices) for word in must), devices
    assert not [d for d in devices if d.startswith(never)], devices
    if overlay == "vxlan":
        assert TUNNELS[cni] in devices, devices
    service = next(p for p in paths if p["step"] == "svc:clusterip")
    if cni == "cilium":  # the pod's own packets carry the backend's address: a normal path that says so
        assert "translated at the socket by Cilium" in service["hops"][0]["note"], shown({"path": service})
    else:
        assert any(h["note"].startswith("DNAT → ") for h in service["hops"]), shown({"path": service})
    assert run_objects(lab) == []


def assert_judged(lab, dialect: str, mode: str, fault: str) -> None:
    """The first broken layer, the cause and the hop of loss, for one fault."""
    lab._before = {p.metadata.name for p in lab.pods("shop", "app=api")}
    lifecycle.break_fault(lab.name, fault, None)
    try:
        settle(lab, fault)
        code, report, err = check_json(lab)
    finally:
        lab._before = {p.metadata.name for p in lab.pods("shop", "app=api")}
        lifecycle.fix_faults(lab.name, fault)
        settle(lab, fault)
        lab.wait(lambda: healthy(lab), timeout=15, what="the shop to be healthy again")
    diagnosis = report["diagnosis"]
    assert (diagnosis["layer"], diagnosis["check_id"], diagnosis["cause"]) == VERDICTS[fault], (
        err, shown(diagnosis), failing(report))
    assert code == (ExitCode.OK if fault in PASSING else ExitCode.CHECK_FAILED), err
    if fault in POLICY_HOPS:
        direction = POLICY_HOPS[fault]
        # Cilium's ingress denies are silent in either mode (delivery goes straight into the pod).
        silent = DIALECTS[dialect][0] == "cilium" and direction == "ingress"
        assert_stopped_by_policy(diagnosis, "drop" if silent else mode, direction)
    else:
        assert_lost_at(diagnosis, path_cause(dialect, fault))
    if fault in WHOLE_PATHS:
        assert_paths_whole(report)
    assert run_objects(lab) == []


def assert_refused(lab, fault: str) -> None:
    """`lab break` says the fault does not exist in this dialect: exit 2, one line, nothing changed."""
    err = StringIO()
    code = main(["lab", "break", fault, "--name", lab.name], Environment(stdout=StringIO(), stderr=err))
    assert code == ExitCode.USAGE, err.getvalue()
    assert err.getvalue().startswith("error: ") and len(err.getvalue().strip().splitlines()) == 1, err.getvalue()
    assert healthy(lab)

"""What `netdoctor check svc/api -n shop` must say for each fault of the lab's catalog, and the
helpers that assert it: shared by test_check_faults.py (the flannel lab, every run three times) and
test_dialect_matrix.py (every CNI dialect)."""

from __future__ import annotations

# fault -> (the report's broken layer: the root cause's, check ID, cause), for `check svc/api -n shop`
# from the default source. The failures the cause explains (DNS through a stale node's ClusterIP,
# pod IPs behind a deny policy) are its consequences, not the broken layer (runbooks.yaml).
VERDICTS = {
    "dns-down": ("dns", "ND-DNS-002", "no-dns-pods"),
    "dns-stale-record": ("dns", "ND-DNS-003", "stale"),
    "dns-lossy": ("dns", "ND-DNS-004", "lossy"),
    "policy-egress-dns-blocked": ("dns", "ND-DNS-002", "egress-blocked"),
    "selector-mismatch": ("endpoints", "ND-EP-002", "selector-mismatch"),
    "target-port-wrong": ("target", "ND-TGT-003", "not-listening"),
    "app-bind-localhost": ("target", "ND-TGT-003", "loopback-only"),
    "pod-not-ready": ("target", "ND-TGT-002", "not-ready"),
    "kube-proxy-stale": ("service", "ND-SVC-001", "node-only"),
    "route-missing": ("node", "ND-NODE-002", "cross-node"),
    "overlay-port-blocked": ("node", "ND-NODE-002", "cross-node"),
    "overlay-mtu": ("node", "ND-NODE-004", "mtu"),
    "policy-deny-ingress": ("policy", "ND-POL-001", "ingress-denied"),
    "icmp-blocked": ("node", "ND-NODE-005", "icmp-blocked"),
    "node-down": ("node", "ND-NODE-001", "not-ready"),
    "policy-lag": (None, None, None),  # the probes' first SYNs are lost, but nothing is broken
    "node-clock-skew": (None, None, None),  # a node's capture times are off, nothing is broken
}
# The faults the check must not fail on (exit 0): ping alone is broken, or nothing is.
PASSING = ("icmp-blocked", "policy-lag", "node-clock-skew")

# fault -> (the key path's hop cause, the node of the hop where it was lost or refused, or None where
# any node may show it) for the faults whose packets meet no NetworkPolicy (those are POLICY_HOPS).
# None: the fault loses no packet (a stale record is a wrong answer, not a loss).
PATH_CAUSES = {
    "dns-down": ("no-endpoints", "node-1"),  # kube-dns has no endpoint: the source node's Service rules reject
    "dns-stale-record": None,
    "dns-lossy": ("destination-drop", None),
    "selector-mismatch": ("no-endpoints", "node-1"),
    "app-bind-localhost": ("refused-by-pod", None),
    "pod-not-ready": ("no-endpoints", "node-1"),
    "kube-proxy-stale": ("untranslated", "node-1"),
    "route-missing": ("no-route", None),
    "overlay-port-blocked": ("overlay-blocked", "node-2"),
    "overlay-mtu": ("mtu", "node-1"),
    "icmp-blocked": ("source-drop", "node-1"),
    "node-down": ("node-not-ready", "node-2"),
    "policy-lag": None,
    "node-clock-skew": None,
}

# The faults whose packets meet the nodes' NetworkPolicy table -> the direction of the policy that
# stops the packet of the diagnosis's path: "ingress" on the destination pod's node, "egress" on
# the source's. target-port-wrong is one: the shop's policy admits the api pods' named port only, so
# the SYN to the wrong port is stopped by the policy before the pod (its root cause is still that
# nothing listens there).
POLICY_HOPS = {
    "policy-deny-ingress": "ingress",
    "policy-egress-dns-blocked": "egress",
    "target-port-wrong": "ingress",
}
# What came back to the source, by mode: nothing, or the node's ICMP port unreachable.
REPLIES = {"drop": None, "reject": "icmp"}


def failing(report: dict) -> list:
    """The evidence and logs of every check that did not pass, for a failure message."""
    return [(c["id"], c["message"], c["evidence"], c["log"]) for layer in report.get("layers", [])
            for c in layer["checks"] if c["state"] not in ("pass", "skip")]


def all_states(report: dict) -> set[str]:
    return {c["state"] for layer in report["layers"] for c in layer["checks"]}


def settle(lab, fault):
    """`lab break` and `lab fix` return once the fault's effects settled (rollouts done, pods gone,
    readiness probed, endpoints, Service rules and DNS programmed); the api rollout is checked here
    as well, by what the API shows."""
    if fault == "app-bind-localhost":
        lab.wait(lambda: all(p.metadata.name not in lab._before for p in lab.pods("shop", "app=api"))
                 and len([p for p in lab.pods("shop", "app=api") if p.status.phase == "Running"]) == 2,
                 timeout=15, what="api rollout")


def healthy(lab) -> bool:
    pods = lab.pods("shop") + lab.pods("kube-system")
    ready = [p for p in pods if p.status.phase == "Running"
             and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]
    return len(ready) == len(pods) and len(lab.pods("kube-system")) == 1 and len(lab.pods("shop", "app=api")) == 2


def shown(diagnosis: dict) -> str:
    """The diagnosis and its path, hop by hop, for assertion messages."""
    path = diagnosis.get("path") or {}
    return "\n".join([
        f"{diagnosis.get('layer')} {diagnosis.get('check_id')}:{diagnosis.get('cause')} {diagnosis.get('headline')}",
        f"path: {path.get('outcome')} {path.get('cause')} at={path.get('at')} {path.get('summary')}",
        *(f"  {h['label']} ({h['kind']}): request={h['request']} reply={h['reply']} {h['note']}"
          for h in path.get("hops", []))])


# The faults that lose nothing and must not look as if they did: every path drawn whole.
WHOLE_PATHS = ("node-clock-skew",)


def assert_paths_whole(report: dict) -> None:
    """Every step's path delivered and seen at every hop (a bridge sees only what it routes, not
    what it switches between two of its ports)."""
    assert report["paths"], report
    for path in report["paths"]:
        text = shown({"path": path})
        if path["cause"] == "mtu-known":  # a DF ping above the pod's route MTU (Cilium's 1450): never sent
            assert path["step"].startswith("ping:") and not path["hops"], text
            continue
        assert path["outcome"] == "delivered" and path["cause"] == "delivered", text
        assert all((h["request"] or h["kind"] == "bridge") and not h["blind"] for h in path["hops"]), text


def assert_lost_at(diagnosis: dict, expected: tuple[str, str | None] | None) -> None:
    path = diagnosis["path"]
    if expected is None:
        assert path is None or path["outcome"] == "delivered", shown(diagnosis)
        return
    cause, node = expected
    assert path is not None and path["cause"] == cause, shown(diagnosis)
    if node is not None:
        assert path["at"] is not None and path["hops"][path["at"]]["node"] == node, shown(diagnosis)


def assert_stopped_by_policy(diagnosis: dict, mode: str, direction: str) -> None:
    """The diagnosis's path was stopped by a NetworkPolicy, at a hop of the node that enforces it
    (in reject mode: the node that rejected), silently or with an ICMP error as the mode says."""
    path = diagnosis["path"]
    assert path is not None, shown(diagnosis)
    # In reject mode the kernel rate-limits ICMP errors: a rejected flow's later connections get no
    # error and look dropped, at the same policy hop. Never "no endpoints" for the reverse-NATed sender.
    silent = mode == "drop" or path["outcome"] == "dropped"
    expected = (f"policy-{direction}", "dropped", None) if silent else ("policy-reject", "rejected", REPLIES[mode])
    assert (path["cause"], path["outcome"], path["hops"][0]["reply"]) == expected, shown(diagnosis)
    enforcing = path["hops"][-1]["node"] if direction == "ingress" else path["hops"][1]["node"]
    assert path["at"] is not None and path["hops"][path["at"]]["node"] == enforcing, shown(diagnosis)

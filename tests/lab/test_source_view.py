"""The source's own view (issue 11 item 5): with --from, names are resolved as the source pod
resolves them (its resolv.conf: nameserver, search list, ndots), also for a source in another
namespace (`--from ops/deploy/X` or `--from-namespace ops`), whose probes run there with its labels.

Sources in `ops` on the shop lab: the scenario's `toolbox` (ClusterFirst), `narrow` whose
dnsConfig searches only ops.svc.cluster.local (so `frontend.shop` never completes), and the same
from a distroless image, where the resolv.conf cannot be read (no `cat`) and is derived from the
pod's dnsPolicy and dnsConfig, as the report says."""

from __future__ import annotations

import json

import pytest
import yaml

from netdoctor.exitcodes import ExitCode
from netdoctor.lab import lifecycle
from netdoctor.lab.state import LabConfig

from labkit import check_json, start, unique_name

pytestmark = pytest.mark.lab

NARROW_DNS = {"nameservers": ["10.96.0.10"], "searches": ["ops.svc.cluster.local"],
              "options": [{"name": "ndots", "value": "5"}]}
# The lab's kubelet writes every pod the ClusterFirst resolv.conf; a real kubelet writes this one from
# the pod's dnsConfig. The container does it itself, into its own /etc/resolv.conf (the pod's file,
# which `ip netns exec` bind-mounts there), and only where that is a mount of its own.
WRITE_RESOLV_CONF = ("grep -q ' /etc/resolv.conf ' /proc/self/mountinfo && printf 'nameserver 10.96.0.10\\n"
                     "search ops.svc.cluster.local\\noptions ndots:5\\n' > /etc/resolv.conf && exec sleep infinity")


def deployment(name: str, image: str, command: list[str] | None) -> dict:
    container = {"name": "toolbox", "image": image, **({"command": command} if command else {})}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "ops", "labels": {"app": name}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"dnsPolicy": "None", "dnsConfig": NARROW_DNS, "containers": [container]}}}}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    running = start(LabConfig(unique_name()))
    try:
        manifest = tmp_path_factory.mktemp("ops") / "narrow.yaml"
        manifest.write_text(yaml.safe_dump_all([
            deployment("narrow", "nicolaka/netshoot:v0.13", ["sh", "-c", WRITE_RESOLV_CONF]),
            deployment("narrow-distroless", "gcr.io/distroless/static-debian12:nonroot", None),
        ]))
        lifecycle.apply(running.name, [str(manifest)])
        for app in ("narrow", "narrow-distroless"):
            running.wait(lambda: any(p.status.phase == "Running" for p in running.pods("ops", f"app={app}")),
                         timeout=20, what=f"ops/{app} running")
        yield running
    finally:
        lifecycle.down(running.name)


def check(lab, *source: str) -> tuple[int, dict, str]:
    return check_json(lab, *source, "--capture", "off", target="svc/frontend")


def checks(report: dict) -> dict[str, dict]:
    return {c["id"]: c for layer in report["layers"] for c in layer["checks"]}


def layer(report: dict, layer_id: str) -> dict:
    return next(entry for entry in report["layers"] if entry["id"] == layer_id)


def test_a_source_in_another_namespace_resolves_the_name_as_it_would(lab):
    for source in (("--from", "ops/deploy/toolbox"), ("--from", "deploy/toolbox", "--from-namespace", "ops")):
        code, report, err = check(lab, *source)
        assert report["source"].startswith("pod/toolbox-"), (err, report.get("source"))
        assert layer(report, "dns")["state"] == "pass", (err, layer(report, "dns"))
        lookups = "\n".join(checks(report)["ND-DNS-002"]["evidence"])
        # the short name a pod in ops uses, completed by its own search list
        assert "frontend.shop.svc.cluster.local. @10.96.0.10: answer" in lookups, lookups
        assert code == ExitCode.OK, (err, report["diagnosis"])


def test_the_probes_run_in_the_sources_namespace_with_its_labels(lab):
    from io import StringIO

    from netdoctor.cli import main
    from netdoctor.environment import Environment

    out = StringIO()
    code = main(["check", "svc/frontend", "-n", "shop", "--from", "ops/deploy/toolbox", "--plan",
                 "--kubeconfig", lab.kubeconfig], Environment(stdout=out, stderr=StringIO(), environ={"NO_COLOR": "1"}))
    assert code == ExitCode.OK
    assert "source: namespace ops" in out.getvalue() and "impersonating pod/toolbox-" in out.getvalue()


def assert_search_path_fails(report: dict, err: str, code: int) -> None:
    diagnosis = report["diagnosis"]
    assert (diagnosis["layer"], diagnosis["check_id"], diagnosis["cause"]) == ("dns", "ND-DNS-002", "search-path"), (
        err, diagnosis, layer(report, "dns"))
    assert "frontend.shop does not resolve from pod/narrow" in diagnosis["headline"]
    assert "its search list (ops.svc.cluster.local, ndots 5)" in diagnosis["headline"]
    assert "frontend.shop.svc.cluster.local, which resolves" in diagnosis["headline"]
    assert code == ExitCode.CHECK_FAILED
    assert any("get pod narrow" in c and "-n ops" in c for c in diagnosis["commands"]), diagnosis["commands"]


def test_a_source_whose_search_list_cannot_complete_the_name_fails_dns(lab):
    code, report, err = check(lab, "--from", "ops/deploy/narrow")
    assert_search_path_fails(report, err, code)
    resolv = checks(report)["ND-DNS-001"]
    assert "search ops.svc.cluster.local" in resolv["evidence"] and "derived" not in json.dumps(resolv), resolv


def test_a_distroless_source_is_judged_by_its_dns_config_and_says_so(lab):
    code, report, err = check(lab, "--from", "deploy/narrow-distroless", "--from-namespace", "ops")
    assert_search_path_fails(report, err, code)
    resolv = checks(report)["ND-DNS-001"]
    evidence = "\n".join(resolv["evidence"])
    assert "search ops.svc.cluster.local" in evidence and "ndots 5" in evidence, resolv
    assert "cannot read pod/narrow-distroless-" in evidence and "derived from its dnsPolicy None and dnsConfig" in evidence
    assert "derived from the pod's spec" in resolv["message"], resolv


def test_the_printed_policy_command_runs_as_printed_and_agrees(lab):
    """api admits only shop's frontend: from ops the check fails at policy, and the `netdoctor
    policy explain` it prints, run exactly as printed, explains the same denial (exit 1)."""
    import shlex
    from io import StringIO

    from netdoctor.cli import main
    from netdoctor.environment import Environment

    code, report, err = check_json(lab, "--from", "ops/deploy/toolbox", "--capture", "off")
    diagnosis = report["diagnosis"]
    assert (diagnosis["layer"], diagnosis["cause"]) == ("policy", "ingress-denied"), (err, diagnosis)
    printed = [c for c in diagnosis["commands"] if c.startswith("netdoctor ")]
    assert any(c.startswith("netdoctor policy explain --from ops/toolbox-") for c in printed), printed
    for command in printed:
        out, errors = StringIO(), StringIO()
        got = main([*shlex.split(command)[1:], "--kubeconfig", lab.kubeconfig],
                   Environment(stdout=out, stderr=errors, environ={"NO_COLOR": "1"}))
        assert got in (ExitCode.OK, ExitCode.CHECK_FAILED) and errors.getvalue() == "", (command, errors.getvalue())
        if " explain " in command:
            assert got == ExitCode.CHECK_FAILED and "api-allow-frontend" in out.getvalue(), out.getvalue()

"""Detection on the lab (issue 12 item 3): the lab's kube-system holds what a flannel cluster with
kube-proxy in nftables mode holds, its API serves DaemonSets as a real one does, and
`netdoctor check` reports flannel/vxlan (confirmed by the nodes' flannel.1) or flannel/routed,
with kube-proxy in nftables mode. The other dialects' detection (calico-vxlan, calico-routed,
cilium-vxlan: Cilium replacing kube-proxy) is asserted by each lab's healthy cell in
test_dialect_matrix.py, all of them in the default run."""

from __future__ import annotations

import pytest

from netdoctor.exitcodes import ExitCode
from netdoctor.lab import lifecycle
from netdoctor.lab.state import LabConfig

from labkit import check_json, start, unique_name

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module", params=["vxlan", "routed"])
def lab(request):
    running = start(LabConfig(unique_name(), overlay=request.param))
    yield request.param, running
    lifecycle.down(running.name)


def test_the_lab_api_serves_the_cni_and_kube_proxy_daemon_sets(lab):
    from kubernetes import client

    _, running = lab
    _, api_client = running.api()
    apps = client.AppsV1Api(api_client)
    flannel = apps.read_namespaced_daemon_set("kube-flannel-ds", "kube-flannel")
    assert flannel.spec.selector.match_labels == {"app": "flannel"}
    assert flannel.status.desired_number_scheduled == flannel.status.number_ready == 2
    assert [d.metadata.name for d in apps.list_namespaced_daemon_set("kube-system", label_selector="k8s-app=kube-proxy").items] == ["kube-proxy"]
    config = client.CoreV1Api(api_client).read_namespaced_config_map("kube-proxy", "kube-system").data["config.conf"]
    assert "mode: nftables" in config


def test_check_reports_flannel_and_kube_proxy_nftables(lab):
    overlay, running = lab
    code, report, err = check_json(running, *(() if overlay == "vxlan" else ("--capture", "off")))
    assert code == ExitCode.OK, err
    cni, proxy = report["cluster"]["cni"], report["cluster"]["proxy"]
    assert (cni["name"], cni["overlay"], cni["confidence"]) == ("flannel", overlay, "high")
    assert f"ConfigMap kube-flannel/kube-flannel-cfg Backend.Type: {'vxlan' if overlay == 'vxlan' else 'host-gw'}" \
        in cni["evidence"]
    if overlay == "vxlan":  # the node captures' inventories confirm it
        assert any(line.endswith(": flannel.1 (flannel's VXLAN device)") for line in cni["evidence"]), cni
    assert (proxy["name"], proxy["mode"], proxy["confidence"]) == ("kube-proxy", "nftables", "high")
    assert "ConfigMap kube-system/kube-proxy config.conf mode: nftables" in proxy["evidence"]

"""A lab that is big on the API side (`lab up --ghost-nodes/--ghost-pods/--ghost-policies`): the
check still plans at most 8 probes, none on a ghost (virtual-kubelet) node, and passes with real
packets on the real nodes; ghost options that make no sense are refused before anything is built."""

from __future__ import annotations

import json
import re
from io import StringIO

import pytest

from netdoctor.cli import main
from netdoctor.cluster.kube import Kube
from netdoctor.environment import Environment
from netdoctor.exitcodes import ExitCode
from netdoctor.lab import lifecycle

from labkit import unique_name

pytestmark = pytest.mark.lab


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    code = main(list(argv), Environment(stdout=out, stderr=err, environ={"NO_COLOR": "1"}))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def lab():
    name = unique_name("g")
    code, out, err = cli("lab", "up", "--name", name, "--ghost-nodes", "1000", "--ghost-pods", "5000",
                         "--ghost-policies", "500")
    try:
        assert code == 0, err
        assert "ghosts (API only): 1,000 nodes, 5,000 pods, 500 policies" in out
        yield str(lifecycle.kubeconfig_path(name))
    finally:
        lifecycle.down(name)


def test_the_ghosts_are_in_the_api(lab):
    kube = Kube.connect(lab)
    assert len(kube.list_metadata("Node")) == 1002
    assert len(kube.list_metadata("NetworkPolicy")) >= 500


def test_a_ghost_filled_lab_plans_at_most_8_probes_and_none_on_a_ghost(lab):
    code, out, err = cli("check", "svc/api", "-n", "shop", "--kubeconfig", lab, "--plan")
    assert code == 0, err
    probes = re.findall(r"^  (\S+): namespace \S+, node (\S+)", out.split("probes to create:")[1], re.M)
    assert 0 < len(probes) <= 8
    assert not [node for _, node in probes if node.startswith("ghost-")]
    sampled = re.findall(r"^  (\S+): ", out.split("nodes sampled:")[1].split("probes to create:")[0], re.M)
    assert sampled and all(n.startswith("node-") for n in sampled)


def test_the_check_passes_on_the_real_nodes_of_a_ghost_filled_lab(lab):
    code, out, err = cli("check", "svc/api", "-n", "shop", "--kubeconfig", lab, "-o", "json")
    report = json.loads(out)
    assert code == ExitCode.OK, [c for layer in report["layers"] for c in layer["checks"] if c["state"] != "pass"]


@pytest.mark.parametrize("argv, says", [
    (("--ghost-pods", "10"), "--ghost-pods needs --ghost-nodes"),
    (("--ghost-nodes", "20000"), "--ghost-nodes must be between 0 and 10,000"),
])
def test_ghost_options_that_make_no_sense_are_refused_before_anything_is_built(argv, says):
    name = unique_name("g")
    code, _, err = cli("lab", "up", "--name", name, *argv)
    assert code == ExitCode.USAGE and says in err
    assert name not in lifecycle.existing_labs()

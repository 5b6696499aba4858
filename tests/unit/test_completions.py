"""completions/ holds what `netdoctor completion SHELL` prints today, and the bash one works."""

import subprocess
from io import StringIO
from pathlib import Path

import pytest

from netdoctor.cli import main
from netdoctor.environment import Environment

COMPLETIONS = Path(__file__).resolve().parents[2] / "completions"


def generated(shell: str) -> str:
    out = StringIO()
    assert main(["completion", shell], Environment(stdout=out, stderr=StringIO())) == 0
    return out.getvalue()


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_shipped_scripts_are_not_stale(shell):
    shipped = (COMPLETIONS / f"netdoctor.{shell}").read_text()
    assert shipped == generated(shell), (
        f"completions/netdoctor.{shell} is stale: run `netdoctor completion {shell} > completions/netdoctor.{shell}`")


def complete(line: str) -> list[str]:
    """What bash offers for `line` (the cursor at its end), using the shipped script."""
    words = line.split(" ")
    script = (
        f"source {COMPLETIONS / 'netdoctor.bash'}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
        "_netdoctor; printf '%s\\n' \"${COMPREPLY[@]}\"\n"
    )
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout.split()


def test_bash_completes_commands_options_and_values():
    assert complete("netdoctor ch") == ["check"]
    assert complete("netdoctor lab br") == ["break"]
    assert "kube-proxy-stale" in complete("netdoctor lab break kube")
    assert complete("netdoctor check svc/api --out") == ["--output"]
    assert complete("netdoctor check svc/api -o j") == ["json", "junit"]
    assert complete("netdoctor policy matrix --output ") == ["text", "json"]


def test_unknown_shell_is_a_usage_error():
    err = StringIO()
    assert main(["completion", "tcsh"], Environment(stdout=StringIO(), stderr=err)) == 2
    assert err.getvalue().startswith("error: unknown shell 'tcsh'")


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_other_shells_parse_and_complete(shell):
    import shutil

    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed (.ci/run installs it)")
    script = COMPLETIONS / f"netdoctor.{shell}"
    subprocess.run([shell, "-n", str(script)], check=True)
    if shell == "fish":
        out = subprocess.run(["fish", "-c", f"source {script}; complete -C 'netdoctor lab br'"],
                             capture_output=True, text=True, check=True).stdout
        assert out.startswith("break\t")

"""Help a person can use: every command says what each option takes (a name such as NAMESPACE, or
its choices), never a Python type; check, cleanup, policy and the root show examples and the exit
codes, the ones exitcodes.ExitCode defines."""

from __future__ import annotations

from io import StringIO

import pytest

from netdoctor.cli import completion_tree, main
from netdoctor.environment import Environment
from netdoctor.exitcodes import ExitCode

COMMANDS = [c.path for c in completion_tree()]


@pytest.fixture
def help_of(capsys):
    def text(path: tuple[str, ...]) -> str:
        assert main([*path, "--help"], Environment(stdout=StringIO(), stderr=StringIO(), environ={})) == 0
        out = capsys.readouterr().out  # click prints help itself
        assert out.startswith("Usage: ")
        return out

    return text


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "netdoctor")
def test_help_names_what_options_take_not_python_types(help_of, path):
    text = help_of(path)
    for python_type in ("<str>", "<bool>", "<int>", "<float>", "<path>", "<dir>", "list[str]"):
        assert python_type not in text, f"{' '.join(path)} --help shows {python_type}:\n{text}"


def test_check_help_shows_choices_examples_and_exit_codes(help_of):
    text = help_of(("check",))
    for shown in ("-o, --output text|json|markdown|junit", "--capture auto|strict|off", "--progress auto|plain|none",
                  "-n, --namespace NAMESPACE", "--kubeconfig FILE", "Examples:", "netdoctor check svc/api -n shop",
                  "Exit codes:"):
        assert shown in text, shown
    for code in ExitCode:
        assert f"\n    {int(code):<3}  " in text


@pytest.mark.parametrize("path", [(), ("cleanup",), ("policy", "matrix"), ("policy", "explain")])
def test_the_main_commands_show_examples_and_exit_codes(help_of, path):
    text = help_of(path)
    assert "Examples:" in text and "Exit codes:" in text and "130" in text


def test_enum_options_show_their_choices(help_of):
    assert "-o, --output text|json" in help_of(("policy", "matrix"))


def test_smoke_help_shows_its_choices_examples_and_exit_codes(help_of):
    text = help_of(("smoke",))
    assert "-o, --output text|json|markdown|junit" in text and "--capture auto|strict|off" in text
    assert "Examples:" in text and "Exit codes:" in text

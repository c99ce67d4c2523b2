"""The ``bmc`` command line: sub-parsers, help, version, one error convention."""
import argparse

import pytest

import bmclib
from bmclib.bench.cli import COMMANDS, main
from bmclib.cli import build_parser


def test_version_and_bare_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"bmc (bmclib) {bmclib.__version__}"
    assert main([]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)  # bare `bmc` lists every command


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_has_help_and_defaults_are_shown(name, capsys):
    sub = next(a for a in build_parser(name, COMMANDS)._actions if isinstance(a, argparse._SubParsersAction))
    p = sub.choices[name]
    for action in p._actions:
        assert action.help, f"bmc {name} {action.option_strings or action.dest}: no help text"
    with pytest.raises(SystemExit) as e:
        main([name, "-h"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for action in p._actions:  # a default that is a value (not a flag's False) is printed with its value
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
            d = " ".join(map(str, action.default)) if isinstance(action.default, list) else str(action.default)
            assert "default" in action.help or f"(default: {d})" in text, f"bmc {name} {action.dest}: default {d}"


def test_unknown_command_and_bad_values_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["nosuch"])
    assert e.value.code == 2 and "invalid choice: 'nosuch'" in capsys.readouterr().err
    assert main(["limits", "/no/such/limits.json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bmc limits:") and "/no/such/limits.json" in err and "Traceback" not in err


def test_help_is_plain_text(capsys):
    """``bmc -h`` and every command's help print no reST markup."""
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "``" not in out and ":mod:" not in out and ":func:" not in out
    for name in COMMANDS:
        with pytest.raises(SystemExit):
            main([name, "-h"])
        text = capsys.readouterr().out
        assert "``" not in text and ":func:" not in text, name

"""Every argparse entry point answers bad input with one line and exit code 2 (``records.command_line``)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from records.command_line import command_line

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("analysis", "launch", "tools", "benchmarks", "algorithms", "envs", "records")


def test_an_unknown_option_and_a_bad_choice_are_one_line_with_exit_code_2(capsys):
    parser = command_line("Does a thing.\n\nDetails nobody needs in --help's first lines.", prog="thing")
    parser.add_argument("--launcher", choices=("local", "slurm"), default="local")
    assert parser.description == "Does a thing."
    for argv, problem in ((["--bogus"], "unrecognized arguments: --bogus"),
                          (["--launcher", "nope"], "invalid choice: 'nope' (choose from 'local', 'slurm')")):
        with pytest.raises(SystemExit) as stop:
            parser.parse_args(argv)
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("thing: error: ") and problem in err, err
        assert "usage:" not in err


def test_every_argument_parser_of_the_project_is_built_by_command_line():
    offenders = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "records" / "command_line.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "ArgumentParser"):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"build these with records.command_line.command_line: {offenders}"


@pytest.mark.parametrize("module", ["analysis.plot_returns", "launch.reproduce", "benchmarks.vae_elbo",
                                    "algorithms.references.gridworld"])
def test_an_entry_point_given_an_unknown_option_prints_one_line(module):
    out = subprocess.run([sys.executable, "-m", module, "some-figure", "--no-such-option"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "unrecognized arguments: " in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and "usage:" not in out.stderr

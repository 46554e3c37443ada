"""The README's commands are the ones CI runs, so the README stays true."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _shell_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```sh\n(.*?)```", text, flags=re.S)]


def test_ci_runs_the_readme_setup_and_test_commands():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    setup, tests = _shell_blocks(readme)[:2]
    assert setup in ci.splitlines()
    assert tests in ci.splitlines()
    assert "set -euo pipefail" in ci


def test_readme_names_only_existing_commands():
    from pyforge.cli import cli

    readme = (ROOT / "README.md").read_text()
    used = set(re.findall(r"`pyforge ([a-z_-]+)", readme))
    assert used <= set(cli.commands), used - set(cli.commands)

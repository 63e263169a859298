"""The project's own promises: pyproject and environment.yml agree, README commands exist."""

from __future__ import annotations

import re
import tomllib

from tests.helpers import ROOT


def _env_pip_deps() -> list[str]:
    text = (ROOT / "environment.yml").read_text()
    block = text.split("  - pip:", 1)[1]
    return [m.group(1).strip() for m in re.finditer(r"^\s{6}- (.+)$", block, re.M)]


def test_environment_yml_lists_exactly_the_pyproject_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"]
    got = [d for d in _env_pip_deps() if d != "-e ."]
    assert sorted(got) == sorted(wanted)
    assert "-e ." in _env_pip_deps()


def test_readme_commands_are_the_ones_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/test.sh" in readme and "scripts/test.sh" in ci
    assert "scripts/workbench.sh" in readme
    for script in ("test.sh", "setup.sh", "workbench.sh", "install-qemu.sh"):
        assert (ROOT / "scripts" / script).is_file(), script

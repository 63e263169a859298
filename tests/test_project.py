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


def test_the_test_command_checks_format_and_fails_on_warnings() -> None:
    script = (ROOT / "scripts" / "test.sh").read_text()
    for step in ("ruff check", "ruff format --check", "mypy", "python -m pytest"):
        assert step in script, step
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert options["filterwarnings"][0] == "error"


def test_the_test_tree_mirrors_the_package() -> None:
    """tests/README.md: tests/<sub>/ and tests/judge/<sub>/ name a subpackage of miglab."""
    tests = ROOT / "tests"
    subpackages = {p.parent.name for p in (ROOT / "miglab").glob("*/__init__.py")}
    folders = {p.parent for p in tests.rglob("*.py")} - {tests}
    assert folders
    for folder in folders:
        assert (folder / "__init__.py").is_file(), folder
        parent = folder.parent.relative_to(tests).as_posix()
        allowed = subpackages | {"judge", "hostile"} if parent == "." else subpackages
        assert parent in (".", "judge") and folder.name in allowed, folder.relative_to(ROOT)

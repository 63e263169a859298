"""The fuzz harness in CI: the seeds replayed in-process, then a bounded atheris run.

The long run is ``python fuzz/run.py --hours 4`` (fuzz/README.md); this is
the same harness for about 45 seconds.  Any finding (an exception other
than MiglabError, a unit over a second, memory over the RSS limit) makes
libFuzzer write an artifact and exit non-zero, and the test fails with it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FUZZ = ROOT / "fuzz"
sys.path.insert(0, str(FUZZ))

import seeds  # noqa: E402
import targets  # noqa: E402

SMOKE_SECONDS = 45


def test_targets_cover_every_reader():
    names = set(targets.TARGETS)
    assert {"load", "verify"} <= names
    from miglab import encoders

    assert {f"decode:{n}" for n in encoders.names()} <= names
    assert {"schema", "check-schemas"} <= names


def test_every_seed_runs_clean():
    """Valid seeds go through every target with at most a MiglabError."""
    count = 0
    for name, data in seeds.seeds():
        targets.run_target(name, data)
        count += 1
    assert count >= 100


def test_fuzz_smoke(tmp_path: Path):
    proc = subprocess.run(
        [
            sys.executable,
            str(FUZZ / "run.py"),
            "--seconds",
            str(SMOKE_SECONDS),
            "--max-len",
            "65536",
            "--corpus",
            str(tmp_path / "corpus"),
            "--artifacts",
            str(tmp_path / "artifacts"),
        ],
        capture_output=True,
        text=True,
        timeout=SMOKE_SECONDS + 120,
        cwd=ROOT,
    )
    findings = sorted(p.name for p in (tmp_path / "artifacts").glob("*-*"))
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0 and not findings, f"fuzz findings {findings}:\n{tail}"
    runs = re.search(r"stat::number_of_executed_units:\s+(\d+)", proc.stderr)
    assert runs is not None and int(runs.group(1)) > 500, tail

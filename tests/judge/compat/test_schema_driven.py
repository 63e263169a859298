"""Real QEMU 7.2 judges miglab.compat.schema_driven: the schema-driven step drops the subsection 7.2 lacks.

The step itself, on data/ streams and schemas, is ``tests/compat/test_schema_driven.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import miglab
from miglab.compat import convert_stream
from miglab.qemu import find_qemu
from tests.compat.test_schema_driven import SCHEMAS, SRC, _with_ltim
from tests.helpers import recipe


@pytest.mark.qemu
def test_qemu_72_accepts_the_stream_without_the_unknown_subsection(tmp_path: Path) -> None:
    stream = _with_ltim(0xFF)
    r = recipe(SRC)
    args = {"machine": "pc-q35-7.2", "devices": r["devices"], "memory": r["memory"]}
    plain, _ = convert_stream(stream, to_qemu="7.2", machine="pc-q35-7.2", allow_guest_visible=True)
    refused = find_qemu("7.2").judge(miglab.save(plain, tmp_path / "plain.mig"), **args)
    assert not refused.accepted  # the subsection alone breaks the rule-converted stream
    out, _ = convert_stream(
        stream, to_qemu="7.2", machine="pc-q35-7.2", allow_guest_visible=True, schemas=SCHEMAS
    )
    verdict = find_qemu("7.2").judge(miglab.save(out, tmp_path / "out.mig"), **args)
    assert verdict.accepted, verdict.stderr

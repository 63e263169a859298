"""The transform stepper asks real QEMU 7.2 at every step of a 10.0 -> 7.2 conversion.

The widgets driven from Python without QEMU are ``tests/widgets/test_widgets.py``.
"""

from __future__ import annotations

import pytest

from miglab.analysis.conversion_steps import refusal
from miglab.widgets import TransformStepper
from tests.widgets.test_widgets import _text


@pytest.mark.qemu
def test_stepper_asks_real_qemu_at_every_step():
    s = TransformStepper(stream="q100-pc-q35-10.0-net.mig", destination="7.2")
    verdicts = s.judge_all()
    accepted = [verdicts[step.number].accepted for step in s.steps]
    first_ok = accepted.index(True)
    assert not any(accepted[:first_ok]) and all(accepted[first_ok:])
    reasons = [refusal(verdicts[n]) for n in range(first_ok)]
    assert "Machine type received is 'pc-q35-10.0' and local is 'pc-q35-7.2'" in reasons[0]
    assert "MIG_CMD 0xb unknown" in reasons[1]
    # QEMU names the byte the diff names as EXP_DEVCAP's EXT_TAG bit (0xe4, bit 5 = 0x20).
    assert "Bad config data: i=0xe4 read: 20 device: 0" in reasons[-1]
    assert "e1000e" in s.steps[first_ok].title
    assert "refused: MIG_CMD 0xb unknown" in _text(s.table.value)

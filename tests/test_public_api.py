"""The packages' public surfaces stay small, and the front doors stay light to import."""

from __future__ import annotations

import subprocess
import sys

import advisor


def test_advisor_all():
    assert advisor.__all__ == ["advise", "AdviceRequest", "Advice", "PlanResult", "AdvisorError"]
    for name in advisor.__all__:
        assert getattr(advisor, name)


def test_importing_the_cli_and_kb_does_not_load_heavy_modules():
    code = (
        "import sys, app.cli, kb; "
        "heavy = [m for m in ('streamlit', 'torch', 'onnxruntime', 'onnx') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""

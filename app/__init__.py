"""The front doors of EdgeDL Advisor: the `edgedl` CLI and the Streamlit app.

Kept light on purpose: heavy modules (Streamlit, ONNX Runtime, torch) are imported inside the
commands that need them, so `edgedl kb search` starts fast.
"""

__all__: list[str] = []

"""The design advisor: plans partitioning and compression for a model, target and link, and
validates every plan it ranks by running it in ONNX Runtime.

>>> from advisor import advise, AdviceRequest
>>> advice = advise(AdviceRequest(model="digits_cnn", device="rpi4", edge="edge_t4",
...                               link="wifi", latency_ms=5))   # doctest: +SKIP
"""

from advisor.advice import Advice, AdviceRequest, PlanResult
from advisor.errors import AdvisorError
from advisor.pipeline import advise

__all__ = ["advise", "AdviceRequest", "Advice", "PlanResult", "AdvisorError"]

"""A plan's artifacts: the model file of each compute step, written where its report links."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

from advisor.measure.timing import save_model
from advisor.plans import Compute, PlanContext

__all__ = ["write_artifacts"]

_WRITE_LOCK = threading.Lock()


def write_artifacts(computes: list[Compute], plan_dir: Path, ctx: PlanContext) -> list[str]:
    """Write each compute step's model: the plan's artifacts, in step order. The FP32 model
    itself (both baselines, a cut at an endpoint) is serialized once per run and linked
    (or copied) after that: on a 100 MB model each write costs 0.35 s."""
    plan_dir.mkdir(parents=True, exist_ok=True)
    artifacts = []
    for i, comp in enumerate(computes):
        file = plan_dir / f"{i}_{comp.tier}_{comp.precision}.onnx"
        if comp.model is ctx.graph.model:
            with _WRITE_LOCK:
                if ctx.fp32_file and Path(ctx.fp32_file).exists():
                    _link(Path(ctx.fp32_file), file)
                else:
                    save_model(comp.model, file)
                    ctx.fp32_file = str(file)
        else:
            save_model(comp.model, file)
        artifacts.append(str(file))
    return artifacts


def _link(src: Path, dst: Path) -> None:
    """`dst` holds `src`'s bytes: a hard link where the file system allows, else a copy."""
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)

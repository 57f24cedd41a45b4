"""`prune.structured`: channel pruning with a short fine-tune in torch, exported back to ONNX.

Only for models whose torch definition, weights and training data the product has (the zoo
models trained here): pruning without fine-tuning data would hide an accuracy loss. Channels
are ranked by the L1 norm of their filters and removed across coupled layers with
torch-pruning's dependency graph (a maintained library: residual and depthwise couplings are
hard to get right by hand); the classifier layer keeps all its outputs.
"""

from __future__ import annotations

import numpy as np
import onnx

from advisor.measure.timing import save_model
from advisor.plans import Candidate, Compute, PlanContext, Skip, planner

DEFAULT_RATIO = 0.5
FINE_TUNE_EPOCHS = 8


def prune_and_finetune(
    module,
    example,
    x_train: np.ndarray,
    y_train: np.ndarray,
    ratio: float = DEFAULT_RATIO,
    epochs: int = FINE_TUNE_EPOCHS,
    seed: int = 0,
):
    """Prune `ratio` of the channels of every prunable layer, then fine-tune; returns the module."""
    import torch
    import torch_pruning as tp

    torch.manual_seed(seed)
    module.eval()
    classifier = [m for m in module.modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)][
        -1
    ]
    pruner = tp.pruner.MagnitudePruner(
        module,
        example,
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=ratio,
        ignored_layers=[classifier],
    )
    pruner.step()
    opt = torch.optim.Adam(module.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train).long()
    module.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(module(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    module.eval()
    return module


def export_like(module, example, graph) -> onnx.ModelProto:
    """Export with the original model's input and output names, one file, quietly."""
    from advisor.graph.io import quiet_export

    return quiet_export(
        module,
        (example,),
        input_names=[t.name for t in graph.inputs],
        output_names=[t.name for t in graph.outputs],
    )


def _cache_key(model_digest: str, src) -> str:
    """Pruning and fine-tuning are deterministic (seeded) for a given model, weights, data,
    settings and library versions, and take most of an advise() run on a small model: the
    result is kept in the cache under all of these."""
    import hashlib
    from importlib.metadata import version

    h = hashlib.sha256()
    weights = getattr(src, "torch_weights", None)
    parts = [
        model_digest,
        str(getattr(src, "id", src)),
        hashlib.sha256(weights.read_bytes()).hexdigest() if weights else "",
        f"{DEFAULT_RATIO}-{FINE_TUNE_EPOCHS}-seed0",
        version("torch"),
        version("torch-pruning"),
    ]
    h.update("|".join(parts).encode())
    return h.hexdigest()[:32]


def _cached(key: str) -> tuple[onnx.ModelProto, int, int] | None:
    from google.protobuf.message import DecodeError

    from advisor import cache

    meta = cache.read_json("pruned", key)
    path = cache.cache_path("pruned", key).with_suffix(".onnx")
    if meta is None or not path.is_file():
        return None
    try:
        return onnx.load(path), int(meta["params_before"]), int(meta["params_after"])
    except (OSError, KeyError, ValueError, DecodeError):
        return None  # unreadable: prune again


def _store(key: str, model: onnx.ModelProto, before: int, after: int) -> None:
    from advisor import cache

    path = cache.cache_path("pruned", key).with_suffix(".onnx")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".onnx.tmp")
    save_model(model, tmp)
    tmp.replace(path)  # the model first: the JSON is what marks the entry complete
    cache.write_json("pruned", key, {"params_before": before, "params_after": after})


def pruned_model(graph, src) -> tuple[onnx.ModelProto, int, int, bool]:
    """(pruned ONNX model, params before, params after, whether it came from the cache) for
    `graph` and its zoo entry `src`; built and cached on a miss. A sweep calls it ahead of
    the timing tasks, so the fine-tune runs beside them."""
    key = _cache_key(graph.digest, src)
    hit = _cached(key)
    if hit is not None:
        return (*hit, True)
    import torch

    from advisor.zoo import torch_model, training_data

    module = torch_model(src)
    x_train, y_train = training_data(src)
    example = torch.from_numpy(x_train[:1])
    params_before = sum(p.numel() for p in module.parameters())
    module = prune_and_finetune(module, example, x_train, y_train)
    params_after = sum(p.numel() for p in module.parameters())
    model = export_like(module, example, graph)
    _store(key, model, params_before, params_after)
    return model, params_before, params_after, False


@planner("prune.structured", "L1 channel pruning with a short fine-tune (torch), on the device")
def prune_structured(ctx: PlanContext) -> list[Candidate] | Skip:
    src = ctx.torch_source
    if ctx.exits:
        return Skip(
            "prune.structured",
            f"the model has {len(ctx.exits)} early exits; the "
            "pruning fine-tune trains a single output (a multi-exit model needs its "
            "joint exit loss, see advisor.graph.exits.train_multi_exit)",
        )
    if src is None:
        return Skip(
            "prune.structured",
            "pruning needs the model's torch definition, weights and "
            "training data; this model is ONNX-only here or its weights are untrained (the zoo's "
            "trained models have all three)",
        )
    model, params_before, params_after, hit = pruned_model(ctx.graph, src)
    return [
        Candidate(
            kind="prune.structured",
            title=f"Channels pruned by {int(DEFAULT_RATIO * 100)}% (L1), fine-tuned "
            f"{FINE_TUNE_EPOCHS} epochs",
            steps=[Compute("device compute", "device", ctx.device, model)],
            params={
                "ratio": DEFAULT_RATIO,
                "epochs": FINE_TUNE_EPOCHS,
                "params_before": params_before,
                "params_after": params_after,
                "reused_from_cache": hit,
            },
        )
    ]

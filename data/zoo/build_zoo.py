"""Build the model zoo in data/zoo/ reproducibly (`make zoo`, about a minute on 2 cores).

    digits_cnn           trained on scikit-learn's bundled digits (8x8, 1797 images, no
                         download); stratified 80/20 split; test accuracy measured by running
                         the exported ONNX file in ONNX Runtime on the held-out split
    resnet_style         ResNet-18 topology at 1/4 width, 224x224, untrained (seeded init)
    mobilenetv2_style    MobileNetV2 topology at 0.35 width, 224x224, untrained (seeded init)
    transformer_encoder  2-layer encoder, int64 token ids + attention mask, seq 128, untrained
    digits_multiexit     the digits CNN's trunk with two side-branch exits, all exits trained
                         jointly (BranchyNet) on the same split; each exit's accuracy measured
                         in ONNX Runtime on the held-out split

Every model is exported with torch.onnx.export (dynamo, one file) with a symbolic batch
dimension, and checked against torch on the same input. Writes zoo.json (the manifest read
by advisor.zoo.manifest), digits_test.npz (x float32 NCHW, y int64), digits_calib.npz (x),
digits_cnn.pt and digits_multiexit.pt (the trained state_dicts). Models are built in manifest
order and each seeds its own generators, so adding one leaves the others byte-identical.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import sklearn
import torch

from advisor.graph.exits import export_multi_exit, train_multi_exit
from advisor.model import load_model
from advisor.zoo import models as zoo_models
from advisor.zoo.manifest import MANIFEST_NAME, ZooManifest, digits_split

HERE = Path(__file__).resolve().parent
SEED = 0
EPOCHS = 40
#: BranchyNet's joint loss: weights of (final, exit1, exit2), the final exit weighted most
EXIT_WEIGHTS = (1.0, 0.3, 0.3)
CALIB_SAMPLES = 128
UNTRAINED = (
    "weights are untrained (seeded deterministic init, batch-norm statistics from seeded random "
    "inputs): use it for latency and partitioning work, not for accuracy"
)


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def flush_subnormals(model: torch.nn.Module) -> int:
    """Set subnormal weights (|w| < the smallest normal float) to zero; return how many.

    Training with weight decay leaves thousands of weights in the subnormal range. They change
    no prediction, but x86 CPUs without flush-to-zero compute with them through microcode
    assists: on one Xeon the digits CNN ran 25x slower in FP32 (2.8 ms vs 0.11 ms), which made
    every compressed plan look like a huge win. Zeroing them keeps the zoo's FP32 baseline
    honest on every CPU.
    """
    count = 0
    with torch.no_grad():
        for param in model.parameters():
            tiny = (param != 0) & (param.abs() < torch.finfo(param.dtype).tiny)
            count += int(tiny.sum())
            param[tiny] = 0.0
    return count


def export(model: torch.nn.Module, args: tuple, names: list[str], path: Path) -> float:
    """Export with a symbolic batch dim; return max |torch - ORT| on `args`."""
    model.eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        program = torch.onnx.export(
            model, args, dynamo=True, external_data=False, input_names=names,
            output_names=["logits"], dynamic_shapes={n: {0: batch} for n in names},
        )  # fmt: skip
    proto = program.model_proto
    proto.graph.name = path.stem
    for node in proto.graph.node:  # stack traces hold this machine's paths: not reproducible
        keep = [p for p in node.metadata_props if p.key != "pkg.torch.onnx.stack_trace"]
        del node.metadata_props[:]
        node.metadata_props.extend(keep)
    onnx.checker.check_model(proto)
    onnx.save_model(proto, path)
    with torch.no_grad():
        expected = model(*args).numpy()
    got = _session(path).run(None, {n: a.numpy() for n, a in zip(names, args, strict=True)})[0]
    return float(np.abs(got - expected).max())


def train_digits() -> tuple[torch.nn.Module, dict[str, np.ndarray]]:
    x_train, y_train, x_test, y_test = digits_split(SEED)
    calib = x_train[np.random.default_rng(SEED).permutation(len(x_train))[:CALIB_SAMPLES]]
    torch.manual_seed(SEED)
    model = zoo_models.DigitsCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    generator = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(EPOCHS):
        for idx in torch.randperm(len(xt), generator=generator).split(32):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            optimizer.step()
    model.eval()
    data = {"x_test": x_test, "y_test": y_test, "calib": calib, "n_train": np.array(len(x_train))}
    return model, data


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tensors(values: list[onnx.ValueInfoProto]) -> list[dict]:
    out = []
    for vi in values:
        t = vi.type.tensor_type
        shape = [d.dim_param or d.dim_value for d in t.shape.dim]
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)).name
        out.append({"name": vi.name, "shape": shape, "dtype": dtype})
    return out


def entry(zoo_id: str, path: Path, **fields) -> dict:
    proto = onnx.load(path)
    graph = load_model(path)  # our own loader: the macs figure is the advisor's count
    return {
        "id": zoo_id,
        "file": path.name,
        "file_bytes": path.stat().st_size,
        "sha256": _sha256(path),
        "params": int(sum(np.prod(i.dims) for i in proto.graph.initializer)),
        "macs": graph.total_macs,
        "inputs": _tensors(list(proto.graph.input)),
        "outputs": _tensors(list(proto.graph.output)),
        **fields,
    }


def build_multiexit() -> dict:
    """The multi-exit digits CNN: trained jointly, exported with every exit an output."""
    x_train, y_train, x_test, y_test = digits_split(SEED)
    torch.manual_seed(SEED)
    model = zoo_models.MultiExitDigitsCNN()
    train_multi_exit(model, x_train, y_train, weights=EXIT_WEIGHTS, epochs=EPOCHS, lr=3e-3,
                     seed=SEED)
    flush_subnormals(model)
    path = HERE / "digits_multiexit.onnx"
    outputs = ["logits", "exit1", "exit2"]  # the order forward() returns them
    err = export_multi_exit(model, (torch.from_numpy(x_test[:2]),), path, input_names=["x"],
                            output_names=outputs, exits=list(model.EXITS))
    torch.save(model.state_dict(), HERE / "digits_multiexit.pt")
    values = dict(zip(outputs, _session(path).run(outputs, {"x": x_test}), strict=True))
    acc = {name: float((v.argmax(1) == y_test).mean()) for name, v in values.items()}
    branches = {"exit1": "after conv1+ReLU (64x8x8): max-pool 2x2, linear 1024->10",
                "exit2": "after conv2+ReLU+max-pool (128x4x4): linear 2048->10",
                "logits": "the final classifier (fc1, ReLU, fc2), as in digits_cnn"}
    n_test = len(y_test)
    method = f"top-1 on digits_test.npz ({n_test} held-out images), ONNX Runtime CPU"
    print("digits_multiexit: " + ", ".join(f"{k} {v:.4f}" for k, v in acc.items())
          + f", export err {err:.1e}")
    return entry(
        "digits_multiexit", path,
        name="Digits CNN with early exits",
        task="image classification (10 digits, 8x8 grayscale)", family="CNN",
        description="The digits CNN's trunk with two side-branch classifiers (after each conv "
        "stage); every exit is an output, the final classifier first.",
        trained=True, accuracy=acc["logits"], accuracy_method=method,
        labelled_data="digits_test.npz", calibration_data="digits_calib.npz",
        torch_builder="advisor.zoo.models:MultiExitDigitsCNN",
        torch_weights="digits_multiexit.pt", training_data="advisor.zoo.manifest:digits_train",
        exits=[{"name": e, "output": e, "branch": branches[e], "accuracy": acc[e],
                "accuracy_method": method} for e in model.EXITS],
        notes=f"trained jointly {EPOCHS} epochs on the weighted sum of exit losses (final "
        f"{EXIT_WEIGHTS[0]:g}, exit1 {EXIT_WEIGHTS[1]:g}, exit2 {EXIT_WEIGHTS[2]:g}), Adam "
        f"lr 3e-3, seed {SEED}; export max abs err {err:.1e}",
    )  # fmt: skip


def main() -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    models = []

    cnn, data = train_digits()
    flush_subnormals(cnn)
    path = HERE / "digits_cnn.onnx"
    err = export(cnn, (torch.from_numpy(data["x_test"][:2]),), ["x"], path)
    np.savez_compressed(HERE / "digits_test.npz", x=data["x_test"], y=data["y_test"])
    np.savez_compressed(HERE / "digits_calib.npz", x=data["calib"])
    torch.save(cnn.state_dict(), HERE / "digits_cnn.pt")
    logits = _session(path).run(None, {"x": data["x_test"]})[0]
    accuracy = float((logits.argmax(1) == data["y_test"]).mean())
    n_test = len(data["y_test"])
    models.append(entry(
        "digits_cnn", path,
        name="Digits CNN", task="image classification (10 digits, 8x8 grayscale)", family="CNN",
        description="Two 3x3 conv layers, max-pool and two linear layers, trained on "
        f"scikit-learn's digits ({int(data['n_train'])} train / {n_test} test, stratified).",
        trained=True, accuracy=accuracy,
        accuracy_method=f"top-1 on digits_test.npz ({n_test} held-out images), ONNX Runtime CPU",
        labelled_data="digits_test.npz", calibration_data="digits_calib.npz",
        torch_builder="advisor.zoo.models:DigitsCNN", torch_weights="digits_cnn.pt",
        training_data="advisor.zoo.manifest:digits_train",
        notes=f"trained {EPOCHS} epochs, Adam lr 3e-3, seed {SEED}; export max abs err {err:.1e}",
    ))  # fmt: skip
    print(f"digits_cnn: test accuracy {accuracy:.4f} on {n_test} images, export err {err:.1e}")

    image = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(SEED))
    for zoo_id, builder, name, description in (
        ("resnet_style", "resnet_style", "ResNet-style (ResNet-18 layout, 1/4 width)",
         "Stem, four stages of two basic blocks with skip connections (widths 16-128), "
         "global pooling, 1000-way classifier."),
        ("mobilenetv2_style", "mobilenetv2_style", "MobileNetV2-style (0.35 width)",
         "Inverted residual blocks with depthwise 3x3 convs and linear bottlenecks, "
         "width multiplier 0.35, 320-channel head, 1000-way classifier."),
    ):  # fmt: skip
        module = getattr(zoo_models, builder)()
        path = HERE / f"{zoo_id}.onnx"
        err = export(module, (image,), ["x"], path)
        models.append(entry(
            zoo_id, path, name=name, task="image classification (224x224 RGB)", family="CNN",
            description=description, trained=False,
            torch_builder=f"advisor.zoo.models:{builder}",
            notes=f"{UNTRAINED}; export max abs err {err:.1e}",
        ))  # fmt: skip
        print(f"{zoo_id}: {path.stat().st_size / 1e6:.2f} MB, export err {err:.1e}")

    module = zoo_models.transformer_encoder()
    ids = torch.randint(0, 1000, (2, 128), generator=torch.Generator().manual_seed(SEED))
    mask = torch.ones(2, 128, dtype=torch.int64)
    mask[1, 80:] = 0  # one padded sequence, so the mask path is exercised
    path = HERE / "transformer_encoder.onnx"
    err = export(module, (ids, mask), ["input_ids", "attention_mask"], path)
    models.append(entry(
        "transformer_encoder", path, name="Transformer encoder (2 layers, d_model 128)",
        task="sequence classification (4 classes, 128 tokens, vocab 1000)", family="Transformer",
        description="Token and position embeddings, two post-norm encoder layers (4 heads, "
        "feed-forward 512, GELU), masked mean pooling, linear classifier.",
        trained=False, torch_builder="advisor.zoo.models:transformer_encoder",
        notes=f"{UNTRAINED}; export max abs err {err:.1e}",
    ))  # fmt: skip
    print(f"transformer_encoder: {path.stat().st_size / 1e6:.2f} MB, export err {err:.1e}")

    models.append(build_multiexit())

    manifest = ZooManifest.model_validate({
        "version": 1, "seed": SEED, "models": models,
        "built_with": {"torch": torch.__version__, "onnx": onnx.__version__,
                       "onnxruntime": ort.__version__, "scikit-learn": sklearn.__version__,
                       "numpy": np.__version__},
    })  # fmt: skip
    text = json.dumps(manifest.model_dump(mode="json", exclude_none=True), indent=2)
    (HERE / MANIFEST_NAME).write_text(text + "\n", encoding="utf-8")
    total = sum(m["file_bytes"] for m in models)
    print(f"wrote {MANIFEST_NAME}: {len(models)} models, {total / 1e6:.2f} MB of ONNX")


if __name__ == "__main__":
    main()

"""Torch definitions of the zoo models (imported only where torch is needed).

`data/zoo/build_zoo.py` builds and exports these; planners that prune or fine-tune import
them through each zoo entry's `torch_builder` ('advisor.zoo.models:<name>'), a callable that
returns the module (the factories re-create the untrained models' exact initialization).

    DigitsCNN            8x8 digits classifier (trained by the build script)
    MultiExitDigitsCNN   DigitsCNN's trunk with two side-branch exits (BranchyNet-style)
    resnet_style()       ResNet-18 topology (basic blocks, skip connections) at 1/4 width
    mobilenetv2_style()  MobileNetV2 topology (inverted residuals, depthwise convs) at 0.35 width
    transformer_encoder() 2-layer Transformer encoder over token ids with an attention mask
"""

from __future__ import annotations

import math

import torch
from torch import nn

INIT_SEED = 1234


class DigitsCNN(nn.Module):
    """Two 3x3 conv layers and two linear layers for 1x8x8 digit images (10 classes).

    Wide enough (64 and 128 channels) that its convolutions, not per-operator overhead,
    dominate its latency — so compression plans are measured on real compute.
    """

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 64, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(64, 128, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(128 * 4 * 4, 128)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(128, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x)))))
        return self.fc2(self.relu3(self.fc1(self.flatten(x))))


class MultiExitDigitsCNN(nn.Module):
    """DigitsCNN's trunk with two early exits (side-branch classifiers), BranchyNet-style.

    `forward` returns (logits, exit1, exit2): the final classifier first, so the model's
    prediction stays output 0, then the early exits, shallowest first. exit1 hangs off the
    first conv stage (pool 2x2, linear), exit2 off the pooled second stage (linear).
    """

    EXITS = ("exit1", "exit2", "logits")  # depth order, final last

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 64, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(64, 128, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(128 * 4 * 4, 128)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(128, classes)
        self.branch1 = nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 4 * 4, classes))
        self.branch2 = nn.Sequential(nn.Flatten(), nn.Linear(128 * 4 * 4, classes))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h1 = self.relu1(self.conv1(x))
        h2 = self.pool(self.relu2(self.conv2(h1)))
        logits = self.fc2(self.relu3(self.fc1(self.flatten(h2))))
        return logits, self.branch1(h1), self.branch2(h2)


# --- ResNet-style -------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """Two 3x3 convs with batch norm; the input is added back (projected when shapes change)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


class ResNetStyle(nn.Module):
    """ResNet-18 layout (stem, 4 stages of 2 basic blocks, pooling, classifier) at `width`."""

    def __init__(
        self, width: int = 16, blocks: tuple[int, ...] = (2, 2, 2, 2), classes: int = 1000
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, cin = [], width
        for i, n in enumerate(blocks):
            cout = width * 2**i
            layers = [BasicBlock(cin if j == 0 else cout, cout, 2 if (i and j == 0) else 1)
                      for j in range(n)]  # fmt: skip
            stages.append(nn.Sequential(*layers))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.flatten(self.avgpool(x)))


# --- MobileNetV2-style --------------------------------------------------------------------


def _divisible(v: float, d: int = 8) -> int:
    out = max(d, int(v + d / 2) // d * d)
    return out + d if out < 0.9 * v else out


def _conv_bn(cin: int, cout: int, k: int, stride: int, groups: int = 1, act: bool = True):
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.ReLU6())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """1x1 expand, 3x3 depthwise, 1x1 linear projection; residual when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers = [] if expand == 1 else [_conv_bn(cin, hidden, 1, 1)]
        layers += [
            _conv_bn(hidden, hidden, 3, stride, groups=hidden),
            _conv_bn(hidden, cout, 1, 1, act=False),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2Style(nn.Module):
    """MobileNetV2 layout (Sandler et al. 2018) with a width multiplier and a slimmer head."""

    # (expansion t, channels c, repeats n, first stride s), Table 2 of the paper
    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip

    def __init__(self, width: float = 0.35, last_channel: int = 320, classes: int = 1000) -> None:
        super().__init__()
        cin = _divisible(32 * width)
        layers: list[nn.Module] = [_conv_bn(3, cin, 3, 2)]
        for t, c, n, s in self.SETTINGS:
            cout = _divisible(c * width)
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        layers.append(_conv_bn(cin, last_channel, 1, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(last_channel, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.pool(self.features(x))))


# --- Transformer encoder ------------------------------------------------------------------


class SelfAttention(nn.Module):
    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, d_model // heads
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.reshape(b, t, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim) + bias
        ctx = torch.softmax(scores, dim=-1) @ v
        return self.out(ctx.transpose(1, 2).reshape(b, t, d))


class EncoderLayer(nn.Module):
    """Post-norm Transformer encoder layer: attention and a GELU feed-forward, each residual."""

    def __init__(self, d_model: int, heads: int, ff: int) -> None:
        super().__init__()
        self.attn = SelfAttention(d_model, heads)
        self.norm1 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, ff), nn.GELU(), nn.Linear(ff, d_model))
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.attn(x, bias))
        return self.norm2(x + self.ff(x))


class TransformerEncoder(nn.Module):
    """Token + position embeddings, encoder layers, masked mean pooling, classifier."""

    def __init__(self, vocab: int = 1000, seq: int = 128, d_model: int = 128, heads: int = 4,
                 layers: int = 2, ff: int = 512, classes: int = 4) -> None:  # fmt: skip
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Embedding(seq, d_model)
        self.layers = nn.ModuleList(EncoderLayer(d_model, heads, ff) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.classifier = nn.Linear(d_model, classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        t = input_ids.shape[1]
        x = self.embed(input_ids) + self.pos.weight[:t]
        mask = attention_mask.to(x.dtype)
        bias = (1.0 - mask[:, None, None, :]) * -1e4  # padded keys get no attention
        for layer in self.layers:
            x = layer(x, bias)
        m = mask.unsqueeze(-1)
        pooled = (x * m).sum(1) / m.sum(1).clamp(min=1.0)
        return self.classifier(self.norm(pooled))


# --- factories: deterministic initialization of the untrained models -------------------


@torch.no_grad()
def _calibrate_batchnorm(model: nn.Module, shape: tuple[int, ...], batches: int = 4) -> None:
    """Set BN running statistics from random inputs so activations stay near unit scale."""
    generator = torch.Generator().manual_seed(INIT_SEED + 1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
    model.train()
    for _ in range(batches):
        model(torch.randn(shape, generator=generator))
    model.eval()


def resnet_style() -> ResNetStyle:
    """ResNetStyle with seeded init and BN statistics from seeded random 224x224 inputs."""
    torch.manual_seed(INIT_SEED)
    model = ResNetStyle()
    _calibrate_batchnorm(model, (4, 3, 224, 224), batches=2)
    return model


def mobilenetv2_style() -> MobileNetV2Style:
    """MobileNetV2Style with seeded init and BN statistics from seeded random inputs."""
    torch.manual_seed(INIT_SEED)
    model = MobileNetV2Style()
    _calibrate_batchnorm(model, (4, 3, 224, 224), batches=2)
    return model


def transformer_encoder() -> TransformerEncoder:
    """TransformerEncoder with seeded init (embeddings ~ N(0, 0.02^2) as in BERT)."""
    torch.manual_seed(INIT_SEED)
    model = TransformerEncoder()
    nn.init.normal_(model.embed.weight, std=0.02)
    nn.init.normal_(model.pos.weight, std=0.02)
    return model.eval()

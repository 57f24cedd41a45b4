"""Plain-torch definitions of the architectures named in data/published_latency.yaml.

Each network is rebuilt layer for layer from its paper / reference implementation (no
torchvision, which is not importable here) with seeded random weights: the published rows are
latencies, which depend on the graph and shapes, not on trained values. `build(name)` returns
an eval-mode module, `export_onnx(name, path)` writes it as a self-contained ONNX file, and
`ARCHS[name]` carries the input shape and the reference parameter / MAC counts that
tests/test_archs.py checks the definitions against.

>>> sorted(ARCHS)[:3]
['alexnet', 'alexnet_bvlc', 'bert_large']
>>> ARCHS["resnet50"].input_shape
(1, 3, 224, 224)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "ARCHS",
    "ArchSpec",
    "build",
    "count_macs",
    "count_params",
    "example_input",
    "export_onnx",
]


# ---------------------------------------------------------------- building blocks


def _conv_bn(
    cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


# ---------------------------------------------------------------- ResNet (He et al. 2016; v1.5)


class _BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * self.expansion
        self.body = nn.Sequential(
            _conv_bn(cin, width, 3, stride), _conv_bn(width, cout, 3, act=False)
        )
        self.short = (
            _conv_bn(cin, cout, 1, stride, act=False)
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.short(x))


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * self.expansion
        # v1.5 (torchvision, MLPerf): the stride sits on the 3x3 conv, not on the first 1x1.
        self.body = nn.Sequential(
            _conv_bn(cin, width, 1),
            _conv_bn(width, width, 3, stride),
            _conv_bn(width, cout, 1, act=False),
        )
        self.short = (
            _conv_bn(cin, cout, 1, stride, act=False)
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.short(x))


class ResNet(nn.Module):
    def __init__(
        self, block: type[_BasicBlock] | type[_Bottleneck], depths: list[int], classes: int = 1000
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(_conv_bn(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1))
        stages: list[nn.Module] = []
        cin = 64
        for i, (width, n) in enumerate(zip((64, 128, 256, 512), depths, strict=True)):
            blocks: list[nn.Module] = []
            for j in range(n):
                blocks.append(block(cin, width, 2 if (j == 0 and i > 0) else 1))
                cin = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# ---------------------------------------------------------------- MobileNet v1 / v2


class MobileNetV1(nn.Module):
    """MobileNet v1 1.0-224 (Howard et al. 2017, Table 1)."""

    _CFG = (
        [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)]
        + [(512, 1)] * 5
        + [(1024, 2), (1024, 1)]
    )

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn(3, 32, 3, 2)]
        cin = 32
        for cout, stride in self._CFG:
            layers += [_conv_bn(cin, cin, 3, stride, groups=cin), _conv_bn(cin, cout, 1)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(1024, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv_bn6(cin, hidden, 1))
        layers += [
            _conv_bn6(hidden, hidden, 3, stride, groups=hidden),
            _conv_bn(hidden, cout, 1, act=False),
        ]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


def _conv_bn6(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class MobileNetV2(nn.Module):
    """MobileNet v2 1.0-224 (Sandler et al. 2018, Table 2)."""

    _CFG = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ]

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn6(3, 32, 3, 2)]
        cin = 32
        for t, c, n, s in self._CFG:
            for i in range(n):
                layers.append(_InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(_conv_bn6(cin, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


# ---------------------------------------------------------------- SqueezeNet 1.1


class _Fire(nn.Module):
    def __init__(self, cin: int, squeeze: int, expand: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.e1 = nn.Conv2d(squeeze, expand, 1)
        self.e3 = nn.Conv2d(squeeze, expand, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.relu(self.squeeze(x))
        return torch.cat([F.relu(self.e1(s)), F.relu(self.e3(s))], 1)


class SqueezeNet11(nn.Module):
    """SqueezeNet v1.1 (forresti/SqueezeNet v1.1; 3x3/64 stem, pools after fire 3 and 5)."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 3, 2),
            nn.ReLU(inplace=True),
            pool,
            _Fire(64, 16, 64),
            _Fire(128, 16, 64),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            _Fire(128, 32, 128),
            _Fire(256, 32, 128),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            _Fire(256, 48, 192),
            _Fire(384, 48, 192),
            _Fire(384, 64, 256),
            _Fire(512, 64, 256),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Conv2d(512, classes, 1), nn.ReLU(inplace=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(F.adaptive_avg_pool2d(self.classifier(self.features(x)), 1), 1)


# ---------------------------------------------------------------- VGG-16, AlexNet


class VGG16(nn.Module):
    """VGG-16, configuration D (Simonyan & Zisserman 2015), no batch norm."""

    _CFG: list[int | str] = [
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        "M",
    ]

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in self._CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                assert isinstance(v, int)
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=True)]
                cin = v
        self.features = nn.Sequential(*layers)
        self.classifier = _fc_head(512 * 7 * 7, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), 7)
        return self.classifier(torch.flatten(x, 1))


def _fc_head(cin: int, classes: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(cin, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(),
        nn.Linear(4096, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(),
        nn.Linear(4096, classes),
    )


class AlexNet(nn.Module):
    """AlexNet, single-tower 'one weird trick' variant (Krizhevsky 2014; torchvision's)."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
        )
        self.classifier = _fc_head(256 * 6 * 6, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), 6)
        return self.classifier(torch.flatten(x, 1))


class AlexNetBVLC(nn.Module):
    """AlexNet as in the 2012 paper / Caffe's bvlc_alexnet: 96-256-384-384-256 channels, two
    groups on conv2/4/5, LRN after conv1 and conv2, 227x227 input (ncnn's benchmark model)."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, 11, 4),
            nn.ReLU(inplace=True),
            nn.LocalResponseNorm(5, 1e-4, 0.75),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(96, 256, 5, padding=2, groups=2),
            nn.ReLU(inplace=True),
            nn.LocalResponseNorm(5, 1e-4, 0.75),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(256, 384, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, 3, padding=1, groups=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1, groups=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
        )
        self.classifier = _fc_head(256 * 6 * 6, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


# ---------------------------------------------------------------- GoogLeNet (Inception v1)


class _Inception(nn.Module):
    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool: int) -> None:
        super().__init__()
        self.b1 = _conv_bn(cin, c1, 1)
        self.b2 = nn.Sequential(_conv_bn(cin, c3r, 1), _conv_bn(c3r, c3, 3))
        # torchvision's GoogLeNet uses a 3x3 where the paper has the 5x5 branch; the paper's
        # 5x5 is kept here (Szegedy et al. 2015, Table 1), as TF-slim and Caffe have it.
        self.b3 = nn.Sequential(_conv_bn(cin, c5r, 1), _conv_bn(c5r, c5, 5))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), _conv_bn(cin, pool, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


class GoogLeNet(nn.Module):
    """GoogLeNet / Inception v1 (Szegedy et al. 2015, Table 1), with batch norm, no aux heads."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.features = nn.Sequential(
            _conv_bn(3, 64, 7, 2),
            pool,
            _conv_bn(64, 64, 1),
            _conv_bn(64, 192, 3),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            _Inception(192, 64, 96, 128, 16, 32, 32),
            _Inception(256, 128, 128, 192, 32, 96, 64),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            _Inception(480, 192, 96, 208, 16, 48, 64),
            _Inception(512, 160, 112, 224, 24, 64, 64),
            _Inception(512, 128, 128, 256, 24, 64, 64),
            _Inception(512, 112, 144, 288, 32, 64, 64),
            _Inception(528, 256, 160, 320, 32, 128, 128),
            nn.MaxPool2d(2, 2, ceil_mode=True),
            _Inception(832, 256, 160, 320, 32, 128, 128),
            _Inception(832, 384, 192, 384, 48, 128, 128),
        )
        self.fc = nn.Sequential(nn.Dropout(0.2), nn.Linear(1024, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


# ---------------------------------------------------------------- EfficientNet-B0


class _SqueezeExcite(nn.Module):
    def __init__(self, c: int, reduced: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(c, reduced, 1)
        self.expand = nn.Conv2d(reduced, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.expand(F.silu(self.reduce(s))))


class _MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.SiLU()]
        layers += [
            nn.Conv2d(hidden, hidden, k, stride, k // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.SiLU(),
            _SqueezeExcite(hidden, max(1, cin // 4)),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class EfficientNetB0(nn.Module):
    """EfficientNet-B0 (Tan & Le 2019, Table 1): MBConv + squeeze-excite (ratio 0.25), SiLU."""

    _CFG = [
        (1, 3, 1, 16, 1),
        (6, 3, 2, 24, 2),
        (6, 5, 2, 40, 2),
        (6, 3, 2, 80, 3),
        (6, 5, 1, 112, 3),
        (6, 5, 2, 192, 4),
        (6, 3, 1, 320, 1),
    ]

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(3, 32, 3, 2, 1, bias=False),
            nn.BatchNorm2d(32),
            nn.SiLU(),
        ]
        cin = 32
        for t, k, s, c, n in self._CFG:
            for i in range(n):
                layers.append(_MBConv(cin, c, k, s if i == 0 else 1, t))
                cin = c
        layers += [nn.Conv2d(cin, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.SiLU()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


# ---------------------------------------------------------------- BERT encoder (Devlin et al. 2019)


@dataclass(frozen=True)
class BertConfig:
    layers: int
    hidden: int
    heads: int
    ffn: int
    vocab: int = 30522
    max_positions: int = 512
    type_vocab: int = 2


class _BertLayer(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.q = nn.Linear(cfg.hidden, cfg.hidden)
        self.k = nn.Linear(cfg.hidden, cfg.hidden)
        self.v = nn.Linear(cfg.hidden, cfg.hidden)
        self.o = nn.Linear(cfg.hidden, cfg.hidden)
        self.ln1 = nn.LayerNorm(cfg.hidden, eps=1e-12)
        self.ff1 = nn.Linear(cfg.hidden, cfg.ffn)
        self.ff2 = nn.Linear(cfg.ffn, cfg.hidden)
        self.ln2 = nn.LayerNorm(cfg.hidden, eps=1e-12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, h = x.shape
        d = h // self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, s, self.heads, d).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)
        ctx = (att @ v).transpose(1, 2).reshape(b, s, h)
        x = self.ln1(x + self.o(ctx))
        return self.ln2(x + self.ff2(F.gelu(self.ff1(x))))


class BertQA(nn.Module):
    """BERT encoder with the SQuAD span head (start/end logits), as MLPerf's bert-99 runs it."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.tok = nn.Embedding(cfg.vocab, cfg.hidden)
        self.pos = nn.Embedding(cfg.max_positions, cfg.hidden)
        self.typ = nn.Embedding(cfg.type_vocab, cfg.hidden)
        self.ln = nn.LayerNorm(cfg.hidden, eps=1e-12)
        self.layers = nn.ModuleList(_BertLayer(cfg) for _ in range(cfg.layers))
        self.qa = nn.Linear(cfg.hidden, 2)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        x = self.tok(input_ids) + self.pos(positions) + self.typ(torch.zeros_like(input_ids))
        x = self.ln(x)
        for layer in self.layers:
            x = layer(x)
        return self.qa(x)


# ---------------------------------------------------------------- registry


@dataclass(frozen=True)
class ArchSpec:
    """One architecture: how to build it, its standard input, and reference counts.

    `ref_params` / `ref_macs` are the figures usually quoted for the network (paper or
    reference implementation, named in `ref_source`); tests check the definitions against them.
    MACs count multiply-accumulates of Conv and Linear layers at `input_shape` (batch 1).
    """

    name: str
    factory: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    ref_params: float
    ref_macs: float | None
    ref_source: str
    input_dtype: torch.dtype = torch.float32
    description: str = ""
    rel_tol: float = 0.02  # how far the definition may be from ref_params / ref_macs


ARCHS: dict[str, ArchSpec] = {
    s.name: s
    for s in (
        ArchSpec(
            "resnet18",
            lambda: ResNet(_BasicBlock, [2, 2, 2, 2]),
            (1, 3, 224, 224),
            11.69e6,
            1.82e9,
            "He et al. 2016 Table 1 (1.8 GFLOPs = MACs); torchvision resnet18 11,689,512 params",
            description="ResNet-18",
        ),
        ArchSpec(
            "resnet50",
            lambda: ResNet(_Bottleneck, [3, 4, 6, 3]),
            (1, 3, 224, 224),
            25.56e6,
            4.09e9,
            "torchvision resnet50 (v1.5): 25,557,032 params, 4.09 GMACs; MLPerf reference model",
            description="ResNet-50 v1.5 (stride on the 3x3 conv)",
        ),
        ArchSpec(
            "mobilenet_v1",
            MobileNetV1,
            (1, 3, 224, 224),
            4.2e6,
            569e6,
            "Howard et al. 2017 Table 8: 1.0 MobileNet-224, 569 M mult-adds, 4.2 M params",
            description="MobileNet v1 1.0-224",
        ),
        ArchSpec(
            "mobilenet_v2",
            MobileNetV2,
            (1, 3, 224, 224),
            3.5e6,
            300e6,
            "Sandler et al. 2018 Table 4: MobileNetV2 (1.0), 300 M MACs, 3.4 M params; "
            "torchvision 3,504,872",
            description="MobileNet v2 1.0-224",
        ),
        ArchSpec(
            "squeezenet1_1",
            SqueezeNet11,
            (1, 3, 224, 224),
            1.235e6,
            0.35e9,
            "forresti/SqueezeNet v1.1 README (2.4x less computation than v1.0); torchvision "
            "squeezenet1_1: 1,235,496 params, 0.35 GFLOPS (MACs) at 224",
            description="SqueezeNet v1.1",
        ),
        ArchSpec(
            "vgg16",
            VGG16,
            (1, 3, 224, 224),
            138.36e6,
            15.47e9,
            "Simonyan & Zisserman 2015 Table 2 (138 M params); torchvision vgg16 138,357,544 "
            "params, 15.47 GMACs",
            description="VGG-16 (configuration D)",
        ),
        ArchSpec(
            "alexnet",
            AlexNet,
            (1, 3, 224, 224),
            61.10e6,
            0.71e9,
            "torchvision alexnet (one-weird-trick variant): 61,100,840 params, 0.71 GMACs",
            description="AlexNet, single-tower torchvision variant",
        ),
        ArchSpec(
            "alexnet_bvlc",
            AlexNetBVLC,
            (1, 3, 227, 227),
            60.97e6,
            0.72e9,
            "Caffe bvlc_alexnet: 60,965,224 params (Krizhevsky et al. 2012: 60 M), "
            "~0.72 GMACs at 227",
            description="AlexNet as in the 2012 paper / Caffe bvlc_alexnet (grouped conv, LRN)",
        ),
        ArchSpec(
            "googlenet",
            GoogLeNet,
            (1, 3, 224, 224),
            6.8e6,
            1.5e9,
            "Szegedy et al. 2015 Table 1: ~6.8 M params and 1.5 G multiply-adds (the table's "
            "figures are rounded and omit batch norm, hence the wider tolerance)",
            description="GoogLeNet / Inception v1 (batch-norm, no aux heads)",
            rel_tol=0.06,
        ),
        ArchSpec(
            "efficientnet_b0",
            EfficientNetB0,
            (1, 3, 224, 224),
            5.3e6,
            0.39e9,
            "Tan & Le 2019 Table 2: EfficientNet-B0 5.3 M params, 0.39 B FLOPs (MACs)",
            description="EfficientNet-B0",
        ),
        ArchSpec(
            "bert_large",
            lambda: BertQA(BertConfig(layers=24, hidden=1024, heads=16, ffn=4096)),
            (1, 384),
            334.09e6,
            None,
            "Devlin et al. 2019: BERT-Large 340 M; encoder+embeddings 334,092,288 + 2,050 "
            "span head (MLPerf bert-99, seq 384)",
            input_dtype=torch.int64,
            description="BERT-Large encoder + SQuAD span head",
        ),
    )
}


def _spec(name: str) -> ArchSpec:
    try:
        return ARCHS[name]
    except KeyError:
        raise KeyError(
            f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHS))}"
        ) from None


def build(name: str, *, seed: int = 0, device: str | torch.device = "cpu") -> nn.Module:
    """The named architecture in eval mode with seeded random weights.

    `device="meta"` builds it without allocating weights (for counting parameters or MACs
    of the large ones). The global RNG state is left untouched.
    """
    spec = _spec(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with torch.device(device):
            model = spec.factory()
    return model.eval()


def example_input(name: str, *, device: str | torch.device = "cpu") -> torch.Tensor:
    """A seeded input of the architecture's standard shape (token ids for BERT)."""
    spec = _spec(name)
    gen = torch.Generator().manual_seed(0)
    if spec.input_dtype == torch.int64:
        x = torch.randint(0, 30522, spec.input_shape, generator=gen)
    else:
        x = torch.randn(spec.input_shape, generator=gen)
    return x.to(device)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of Conv2d and Linear layers for one forward pass of `x`.

    Works on `device="meta"` models and inputs, so nothing is computed.
    """
    total = 0

    def hook(mod: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            kh, kw = mod.kernel_size
            total += out.numel() * (mod.in_channels // mod.groups) * kh * kw
        elif isinstance(mod, nn.Linear):
            total += out.numel() * mod.in_features

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return total


def export_onnx(
    name: str, path: str | Path, *, dynamo: bool = True, opset: int = 18, seed: int = 0
) -> Path:
    """Export the architecture (batch 1, standard input) to one self-contained ONNX file."""
    path = Path(path)
    model = build(name, seed=seed)
    x = example_input(name)
    input_name = "input_ids" if _spec(name).input_dtype == torch.int64 else "input"
    torch.onnx.export(
        model,
        (x,),
        str(path),
        dynamo=dynamo,
        external_data=False,
        opset_version=opset,
        input_names=[input_name],
        output_names=["output"],
    )
    return path

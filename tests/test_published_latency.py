"""data/published_latency.yaml: enough rows, every reference resolves, every figure sourced."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from advisor.errors import CatalogError
from advisor.targets.catalog import load_catalog
from advisor.targets.published import load_published
from bench import archs


@pytest.fixture(scope="module")
def rows():
    return load_published()


def test_enough_rows_across_devices_models_and_precisions(rows):
    assert len(rows) >= 50
    devices = Counter(r.device for r in rows)
    models = Counter(r.model for r in rows)
    assert len(devices) >= 8, devices
    assert len(models) >= 6, models
    assert {r.precision.value for r in rows} == {"fp32", "fp16", "int8"}
    assert all(r.precision.value == "int8" for r in rows if r.device == "coral_edgetpu")
    assert any(r.device == "coral_edgetpu" for r in rows)


def test_ids_unique(rows):
    ids = [r.id for r in rows]
    assert len(ids) == len(set(ids))


def test_every_device_is_a_catalog_target(rows):
    targets = set(load_catalog().targets)
    unknown = sorted({r.device for r in rows} - targets)
    assert not unknown, f"devices not in data/hardware.yaml: {unknown}"


def test_every_model_is_buildable_at_its_shape(rows):
    for r in rows:
        assert r.model in archs.ARCHS, f"{r.id}: {r.model} is not in bench/archs.py"
        spec = archs.ARCHS[r.model]
        assert len(r.input_shape) == len(spec.input_shape), r.id
        if len(spec.input_shape) == 4:
            assert r.input_shape[1] == spec.input_shape[1], f"{r.id}: channel count"
    for name in sorted({r.model for r in rows}):
        model = archs.build(name, device="meta")
        assert archs.count_params(model) > 0


def test_every_figure_is_sourced_positive_and_finite(rows):
    for r in rows:
        s = r.source
        assert s.url.startswith(("https://", "http://")), r.id
        assert s.title and s.location and 1990 <= s.year <= 2100, r.id
        assert r.latency_ms > 0 and math.isfinite(r.latency_ms), r.id
        if r.compute_unit.value != "cpu":
            assert r.threads is None, r.id


BAD_ROWS = [
    ({"extra_field": 1}, "extra_field"),
    ({"latency_ms": 0}, "latency_ms"),
    ({"latency_ms": ".nan"}, "latency_ms"),
    ({"precision": "fp8"}, "precision"),
    ({"batch": 2}, "batch is 2"),
    ({"threads": 4, "compute_unit": "gpu"}, "CPU rows only"),
    (
        {
            "source": {
                "title": "A paper",
                "publisher": "Venue",
                "year": 2020,
                "url": "not a url",
                "location": "Table 1",
            }
        },
        "source.url",
    ),
]


def _row(**over):
    base = {
        "id": "x-1",
        "model": "resnet50",
        "input_shape": [1, 3, 224, 224],
        "batch": 1,
        "device": "rpi4",
        "compute_unit": "cpu",
        "runtime": "ncnn",
        "runtime_version": "1",
        "precision": "fp32",
        "threads": 4,
        "latency_ms": 10.0,
        "statistic": "mean",
        "source": {
            "title": "A paper",
            "publisher": "Venue",
            "year": 2020,
            "url": "https://example.org/p",
            "location": "Table 1",
        },
    }
    base.update(over)
    return base


def _write(tmp_path, rows):
    import yaml

    p = tmp_path / "pub.yaml"
    text = yaml.safe_dump({"rows": rows})
    p.write_text(text.replace("'.nan'", ".nan"))
    return p


@pytest.mark.parametrize(("override", "message"), BAD_ROWS)
def test_bad_row_gives_one_line_naming_row_and_field(tmp_path, override, message):
    path = _write(tmp_path, [_row(), _row(id="x-2", **override)])
    with pytest.raises(CatalogError) as info:
        load_published(path)
    text = str(info.value)
    assert "\n" not in text
    assert "row 1 (x-2)" in text and message in text, text


def test_duplicate_ids_and_missing_file(tmp_path):
    with pytest.raises(CatalogError, match="duplicate row id 'x-1'"):
        load_published(_write(tmp_path, [_row(), _row()]))
    with pytest.raises(CatalogError, match="cannot read published latencies"):
        load_published(tmp_path / "missing.yaml")


def test_good_custom_file_loads(tmp_path):
    (row,) = load_published(_write(tmp_path, [_row()]))
    assert row.latency_ms == 10.0 and row.threads == 4

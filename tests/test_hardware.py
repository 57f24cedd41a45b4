"""The hardware/link catalog, the host target, the link model and `edgedl hardware`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from advisor.errors import CatalogError, RequestError, UnknownIdError
from advisor.targets.catalog import (
    DEFAULT_CATALOG,
    Link,
    get_link,
    get_target,
    host_target,
    load_catalog,
    transfer_ms,
)
from app.cli import cli

REQUIRED_TARGETS = {"rpi4", "rpi5", "jetson_nano", "jetson_orin_nano", "coral_edgetpu",
                    "edge_t4", "cloud_a100"}  # fmt: skip
REQUIRED_LINKS = {"3g", "4g", "5g", "wifi", "ethernet"}


@pytest.fixture(scope="module", autouse=True)
def _own_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEDL_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


def test_catalog_has_the_required_targets_and_links():
    cat = load_catalog()
    assert len(cat.targets) >= 10 and len(cat.links) >= 5
    assert REQUIRED_TARGETS <= set(cat.targets)
    assert REQUIRED_LINKS <= set(cat.links)
    assert {t.tier for t in cat.targets.values()} == {"device", "edge", "cloud"}
    kinds = {t.kind for t in cat.targets.values()}
    assert {"cpu", "gpu", "tpu", "soc"} <= kinds
    # a mid-range and a flagship phone SoC, and an x86 edge box
    names = " ".join(t.name.lower() for t in cat.targets.values())
    assert "mid-range phone" in names and "flagship phone" in names and "x86" in names


def test_every_figure_has_a_source():
    cat = load_catalog()
    for t in cat.targets.values():
        figures = [f"peak_gflops.{p}" for p in t.peak_gflops] + ["mem_bandwidth_gbps", "memory_gb"]
        figures += ["power_w"] if t.power_w is not None else []
        for f in figures:
            assert len(t.sources.get(f, "").strip()) > 10, (t.id, f)
        assert set(t.precisions) == set(t.peak_gflops)
    for link in cat.links.values():
        for f in ("up_mbps", "down_mbps", "rtt_ms"):
            assert len(link.sources[f].strip()) > 10, (link.id, f)


def test_datasheet_figures_are_the_sourced_ones():
    t4 = get_target("edge_t4")
    assert t4.peak_gflops == {"fp32": 8100.0, "fp16": 65000.0, "int8": 130000.0}
    assert (t4.mem_bandwidth_gbps, t4.memory_gb, t4.power_w) == (320, 16, 70)
    a100 = get_target("cloud_a100")
    assert a100.peak_gflops["fp32"] == 19500 and a100.mem_bandwidth_gbps == 1555
    nano = get_target("jetson_nano")
    assert nano.peak_gflops["fp16"] == 472 and nano.mem_bandwidth_gbps == 25.6
    rpi4 = get_target("rpi4")
    assert rpi4.peak_gflops["fp32"] == 4 * 1.5 * 8  # cores x GHz x FLOP/cycle
    assert "derived" in rpi4.sources["peak_gflops.fp32"]


def _entry() -> dict:
    return yaml.safe_load(DEFAULT_CATALOG.read_text())["targets"][0]


def _link() -> dict:
    return yaml.safe_load(DEFAULT_CATALOG.read_text())["links"][0]


def _with(**changes) -> dict:
    entry = _entry()
    entry.update(changes)
    return entry


def _without_source(key: str) -> dict:
    entry = _entry()
    entry["sources"] = {k: v for k, v in entry["sources"].items() if k != key}
    return entry


BAD_CATALOGS = [
    ("targets: [\n  - id: x\n", "not valid YAML"),
    ("- just a list\n", "expected a mapping"),
    ({"targets": [_with(flops=3)], "links": [_link()]}, "target 'rpi4', field flops: Extra inputs"),
    ({"targets": [_without_source("memory_gb")], "links": [_link()]},
     "figures without a source: memory_gb"),
    ({"targets": [_with(precisions=["fp32", "int8"])], "links": [_link()]}, "must list exactly"),
    ({"targets": [_with(tier="space")], "links": [_link()]}, "target 'rpi4', field tier"),
    ({"targets": [_entry(), _entry()], "links": [_link()]}, "duplicate target id 'rpi4'"),
    ({"targets": [_with(id="host")], "links": [_link()]}, "reserved"),
    ({"targets": [_entry()], "links": [{**_link(), "sources": {"up_mbps": "x"}}]},
     "link '3g'"),
    ({"targets": [_entry()], "link": []}, "link: Extra inputs are not permitted"),
]  # fmt: skip


@pytest.mark.parametrize(("content", "message"), BAD_CATALOGS)
def test_bad_catalog_is_a_clear_error(tmp_path: Path, content, message):
    path = tmp_path / "hw.yaml"
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    with pytest.raises(CatalogError) as err:
        load_catalog(path)
    assert message in str(err.value)
    assert "hw.yaml" in str(err.value)


def test_missing_catalog_file_is_a_catalog_error(tmp_path: Path):
    with pytest.raises(CatalogError, match="cannot read hardware catalog"):
        load_catalog(tmp_path / "nope.yaml")


def test_unknown_ids_name_the_known_ones():
    with pytest.raises(UnknownIdError) as err:
        get_target("rpi6")
    assert "rpi6" in str(err.value) and "Did you mean rpi5" in str(err.value)
    assert "host" in str(err.value) and "cloud_a100" in str(err.value)
    with pytest.raises(UnknownIdError, match="unknown link preset 'lora'.*wifi"):
        get_link("lora")


def test_transfer_model():
    link = Link(id="t", name="t", up_mbps=8, down_mbps=80, rtt_ms=20,
                sources={"up_mbps": "s", "down_mbps": "s", "rtt_ms": "s"})  # fmt: skip
    assert transfer_ms(0, link) == 10.0  # half the round trip
    assert transfer_ms(1_000_000, link, "up") == pytest.approx(10 + 1000)
    assert transfer_ms(1_000_000, link, "down") == pytest.approx(10 + 100)
    with pytest.raises(RequestError):
        transfer_ms(-1, link)
    with pytest.raises(RequestError):
        transfer_ms(1, link, "sideways")  # type: ignore[arg-type]
    slow, fast = get_link("3g"), get_link("ethernet")
    assert transfer_ms(150_528, slow) > transfer_ms(150_528, fast)


def test_host_target_is_built_from_calibration_and_fingerprint():
    from advisor.measure.calibrate import calibrate
    from advisor.measure.profile import fingerprint

    cal, fp = calibrate(threads=1), fingerprint(1)
    host = host_target(cal, fp)
    assert host.id == "host" and host.kind == "cpu"
    assert host.peak_gflops["fp32"] == cal.gflops_fp32 > 1
    assert host.mem_bandwidth_gbps == cal.bandwidth_gbps > 0.5
    assert fp.cpu_model in host.name
    assert all(s.startswith(("measured", "psutil")) for s in host.sources.values())
    with pytest.raises(RequestError, match="different fingerprint"):
        host_target(cal, fingerprint(2))
    assert get_target("host").peak_gflops == host.peak_gflops  # cached calibration reused


def test_cli_hardware_list_json():
    result = CliRunner().invoke(cli, ["hardware", "list", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    ids = [t["id"] for t in data["targets"]]
    assert len(ids) >= 11 and "host" in ids and REQUIRED_TARGETS <= set(ids)
    assert REQUIRED_LINKS <= {link["id"] for link in data["links"]}
    for t in data["targets"]:
        assert all(f"peak_gflops.{p}" in t["sources"] for p in t["peak_gflops"])
        assert "mem_bandwidth_gbps" in t["sources"]
    for link in data["links"]:
        assert set(link["sources"]) == {"up_mbps", "down_mbps", "rtt_ms"}


def test_cli_hardware_list_and_show_text():
    runner = CliRunner()
    out = runner.invoke(cli, ["hardware", "list", "--no-host"])
    assert out.exit_code == 0 and "jetson_orin_nano" in out.output and "ethernet" in out.output
    out = runner.invoke(cli, ["hardware", "show", "edge_t4"])
    assert out.exit_code == 0 and "NVIDIA T4" in out.output and "130,000.0 GOP/s" in out.output
    out = runner.invoke(cli, ["hardware", "show", "wifi", "--json"])
    assert out.exit_code == 0 and json.loads(out.output)["type"] == "link"
    out = runner.invoke(cli, ["hardware", "show", "host", "--json"])
    assert out.exit_code == 0 and json.loads(out.output)["id"] == "host"


def test_cli_unknown_id_exits_2_with_one_line():
    result = CliRunner().invoke(cli, ["hardware", "show", "nosuch"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "unknown hardware target or link 'nosuch'" in lines[0]

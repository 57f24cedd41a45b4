"""`edgedl hardware list|show`: the target and link catalog, plus this host as `host`."""

from __future__ import annotations

import textwrap

import click

from app.commands._common import echo_json, json_option

_PRECISIONS = ("fp32", "fp16", "int8")

catalog_option = click.option(
    "--catalog",
    "catalog_path",
    type=click.Path(dir_okay=False),
    help="A hardware YAML file to use instead of the bundled data/hardware.yaml.",
)
threads_option = click.option(
    "--threads",
    default=1,
    show_default=True,
    help="Intra-op threads the `host` target is calibrated at.",
)


def _catalog(path: str | None):
    from advisor.targets.catalog import load_catalog

    return load_catalog(path)


def _host(threads: int):
    from advisor.targets.catalog import get_target

    return get_target("host", threads=threads)


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


@click.group("hardware")
def hardware() -> None:
    """Hardware targets (peak compute, memory, power, with sources) and network link presets."""


@hardware.command("list")
@catalog_option
@threads_option
@click.option("--no-host", is_flag=True, help="Skip calibrating and listing this machine.")
@json_option
def list_cmd(catalog_path: str | None, threads: int, no_host: bool, as_json: bool) -> None:
    """List every target (including `host`, this machine) and every link preset."""
    cat = _catalog(catalog_path)
    targets = list(cat.targets.values()) + ([] if no_host else [_host(threads)])
    links = list(cat.links.values())
    if as_json:
        echo_json(
            {
                "catalog": cat.source,
                "units": {
                    "peak_gflops": "GFLOP/s (fp32, fp16), GOP/s (int8)",
                    "mem_bandwidth_gbps": "GB/s",
                    "memory_gb": "GB",
                    "power_w": "W",
                    "up_mbps": "Mbit/s",
                    "down_mbps": "Mbit/s",
                    "rtt_ms": "ms",
                },
                "targets": [t.model_dump(mode="json") for t in targets],
                "links": [link.model_dump(mode="json") for link in links],
            }
        )
        return
    w = max(len(t.id) for t in targets)
    click.echo(
        f"{'target':<{w}}  {'tier':<6} {'kind':<4} {'fp32':>9} {'fp16':>9} {'int8':>9} "
        f"{'GB/s':>6} {'GB':>5} {'W':>4}  name"
    )
    for t in targets:
        peaks = " ".join(f"{_fmt(t.peak_gflops.get(p)):>9}" for p in _PRECISIONS)
        click.echo(
            f"{t.id:<{w}}  {t.tier:<6} {t.kind:<4} {peaks} {_fmt(t.mem_bandwidth_gbps):>6} "
            f"{_fmt(t.memory_gb):>5} {_fmt(t.power_w):>4}  {t.name}"
        )
    click.echo("(peaks in GFLOP/s, int8 in GOP/s; `edgedl hardware show ID` for sources)\n")
    w = max(len(link.id) for link in links)
    click.echo(f"{'link':<{w}}  {'up Mbit/s':>9} {'down Mbit/s':>11} {'RTT ms':>7}  name")
    for link in links:
        click.echo(
            f"{link.id:<{w}}  {_fmt(link.up_mbps):>9} {_fmt(link.down_mbps):>11} "
            f"{_fmt(link.rtt_ms):>7}  {link.name}"
        )


@hardware.command("show")
@click.argument("ident")
@catalog_option
@threads_option
@json_option
def show(ident: str, catalog_path: str | None, threads: int, as_json: bool) -> None:
    """One target or link preset with every figure and its source."""
    from advisor.errors import UnknownIdError
    from advisor.targets.catalog import HOST_ID

    cat = _catalog(catalog_path)
    if ident == HOST_ID or ident in cat.targets:
        item = _host(threads) if ident == HOST_ID else cat.targets[ident]
        kind = "target"
    elif ident in cat.links:
        item, kind = cat.links[ident], "link"
    else:
        import difflib

        known = [*cat.targets, HOST_ID, *cat.links]
        near = difflib.get_close_matches(ident, known, n=3)
        hint = f" Did you mean {', '.join(near)}?" if near else ""
        raise UnknownIdError(
            f"unknown hardware target or link {ident!r}.{hint} "
            "List them with `edgedl hardware list`."
        )
    if as_json:
        echo_json({"type": kind, **item.model_dump(mode="json")})
        return
    click.echo(f"{item.name}  [{item.id}, {kind}]")
    data = item.model_dump()
    figures = []
    if kind == "target":
        click.echo(f"  tier {item.tier}, kind {item.kind}, precisions {', '.join(item.precisions)}")
        for p, v in item.peak_gflops.items():
            unit = "GOP/s" if p == "int8" else "GFLOP/s"
            figures.append((f"peak_gflops.{p}", f"{v:,.1f} {unit}"))
        figures += [
            ("mem_bandwidth_gbps", f"{item.mem_bandwidth_gbps:,.1f} GB/s"),
            ("memory_gb", f"{item.memory_gb:g} GB"),
        ]
        if item.power_w is not None:
            figures.append(("power_w", f"{item.power_w:g} W"))
    else:
        figures = [
            ("up_mbps", f"{item.up_mbps:g} Mbit/s"),
            ("down_mbps", f"{item.down_mbps:g} Mbit/s"),
            ("rtt_ms", f"{item.rtt_ms:g} ms"),
        ]
    for key, value in figures:
        click.echo(f"  {key:<19} {value}")
        click.echo(
            textwrap.fill(
                data["sources"][key], 96, initial_indent=" " * 6, subsequent_indent=" " * 6
            )
        )
    if kind == "target" and item.notes:
        click.echo(
            "\n"
            + textwrap.fill(f"Notes: {item.notes}", 96, initial_indent="  ", subsequent_indent="  ")
        )

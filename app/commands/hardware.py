"""`edgedl hardware list|show|calibrate`: the target and link catalog (bundled, the user's
measured target files, `--catalog` files), this host as `host`, and measuring a target."""

from __future__ import annotations

import textwrap

import click

from app.commands._common import echo_json, json_option

_PRECISIONS = ("fp32", "fp16", "int8")

catalog_option = click.option(
    "--catalog",
    "catalog_paths",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="A target file to read besides the bundled catalog and the user catalog folder "
    "(repeatable).",
)
threads_option = click.option(
    "--threads",
    default=1,
    show_default=True,
    help="Intra-op threads the `host` target is calibrated at.",
)


def _catalog(paths: tuple[str, ...]):
    from advisor.targets.catalog import load_catalog

    return load_catalog(extra=paths)


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
def list_cmd(catalog_paths: tuple[str, ...], threads: int, no_host: bool, as_json: bool) -> None:
    """List every target (including `host`, this machine, and measured target files) and
    every link preset."""
    cat = _catalog(catalog_paths)
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
                "targets": [
                    {
                        **t.model_dump(mode="json", exclude={"profile"}),
                        "measured": t.measured,
                        "file": cat.origins.get(t.id),
                    }
                    for t in targets
                ],
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
        mark = " [measured]" if t.measured or t.id == "host" else ""
        click.echo(
            f"{t.id:<{w}}  {t.tier:<6} {t.kind:<4} {peaks} {_fmt(t.mem_bandwidth_gbps):>6} "
            f"{_fmt(t.memory_gb):>5} {_fmt(t.power_w):>4}  {t.name}{mark}"
        )
    click.echo(
        "(peaks in GFLOP/s, int8 in GOP/s: datasheet figures, or attained ones for [measured] "
        "targets; `edgedl hardware show ID` for sources)\n"
    )
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
def show(ident: str, catalog_paths: tuple[str, ...], threads: int, as_json: bool) -> None:
    """One target or link preset with every figure and its source."""
    from advisor.errors import UnknownIdError
    from advisor.targets.catalog import HOST_ID

    cat = _catalog(catalog_paths)
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
    if kind == "target" and item.profile is not None:
        _show_profile(item.profile, cat.origins.get(item.id))


def _show_profile(profile, origin: str | None) -> None:
    click.echo(f"\n  Measured profile ({profile.source()}){f'; file {origin}' if origin else ''}")
    for t in profile.thread_counts:
        tr = profile.by_threads[t]
        click.echo(
            f"  {t} thread(s): dispatch {tr.dispatch_us:.3g} µs/node, call {tr.call_ms:.3g} ms"
        )
        for cls, pts in tr.rates.items():
            unit = "GB/s" if cls in ("elementwise", "norm", "pool") else "GFLOP/s"
            rates = ", ".join(f"{p.rate:.3g}" for p in pts)
            click.echo(f"    {cls:<12} {rates} {unit} (small → large)")


@hardware.command("calibrate")
@click.option("--save", "save_id", required=True, help="Id to save the measured target as.")
@click.option(
    "--threads",
    "thread_list",
    default="auto",
    show_default=True,
    help="Comma-separated thread counts to measure, e.g. 1,2,4; auto: 1 and each power of two "
    "up to the measured machine's cores (advise then runs each stage at its fastest count).",
)
@click.option("--agent", "agent_url", help="Measure the machine behind this edgedl agent URL.")
@click.option("--token", envvar="EDGEDL_AGENT_TOKEN", help="The agent's bearer token.")
@click.option("--name", help="A display name (default: the CPU model).")
@click.option(
    "--tier", type=click.Choice(["device", "edge", "cloud"]), default="device", show_default=True
)
@click.option("--quick", is_flag=True, help="A third of the measurement time per probe.")
@click.option(
    "--folder",
    type=click.Path(file_okay=False),
    help="Where to save (default: $EDGEDL_HARDWARE or ~/.config/edgedl/hardware).",
)
@json_option
def calibrate(
    save_id: str,
    thread_list: str,
    agent_url: str | None,
    token: str | None,
    name: str | None,
    tier: str,
    quick: bool,
    folder: str | None,
    as_json: bool,
) -> None:
    """Measure a target profile (attained rate per operator class and size, per-node and
    per-call costs, at each thread count) here or through an agent, and save it as target
    SAVE_ID: then `edgedl advise --device SAVE_ID` predicts from what was measured."""
    from pathlib import Path

    from advisor.errors import RequestError
    from advisor.measure.suite import parse_threads
    from advisor.targets.calibrated import measure_target, target_from_profile
    from advisor.targets.catalog import HOST_ID, load_catalog, save_target

    try:
        auto = thread_list.strip().lower() == "auto"
        counts = None if auto else parse_threads(thread_list)
    except RequestError as exc:
        raise RequestError(f"--threads: {exc}") from None
    existing = load_catalog()
    if save_id == HOST_ID or (
        save_id in existing.targets and existing.origins.get(save_id) == existing.source
    ):
        raise RequestError(f"{save_id!r} is a built-in target id; choose another for --save")
    where = f"the agent at {agent_url}" if agent_url else "this machine"
    which = "1 and each power of two up to its cores"
    if counts is not None:
        which = ", ".join(map(str, counts))
    click.echo(f"calibrating {where} at {which} thread(s)…", err=True)
    profile, memory = measure_target(counts, agent=agent_url, token=token, quick=quick)
    target = target_from_profile(
        profile,
        save_id,
        memory_gb=memory,
        name=name,
        tier=tier,  # type: ignore[arg-type]
    )
    path = save_target(target, Path(folder) if folder else None)
    if as_json:
        echo_json({"file": str(path), "target": target.model_dump(mode="json")})
        return
    click.echo(f"saved {save_id} to {path} ({profile.seconds:g} s of measurement)")
    _show_profile(profile, None)

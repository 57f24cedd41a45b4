"""Hardware: the catalog of targets and links with their sources; this host's fingerprint."""

from __future__ import annotations

import os

import pandas as pd
import streamlit as st

from app import ui


@st.cache_data(show_spinner=False)
def _fingerprint(threads: int) -> dict:
    from advisor.measure.profile import fingerprint

    return fingerprint(threads).model_dump()


@st.cache_data(show_spinner="Calibrating this host (compute and memory micro-benchmarks)…")
def _calibration(threads: int) -> dict:
    from advisor.measure.calibrate import calibrate

    return calibrate(threads=threads).model_dump()


def _targets(catalog) -> None:
    st.subheader("Targets")
    rows = []
    for t in catalog.targets.values():
        peaks = t.peak_gflops
        rows.append(
            {
                "id": t.id,
                "measured": "measured profile" if t.measured else "datasheet",
                "name": t.name,
                "tier": t.tier,
                "kind": t.kind,
                "fp32 peak (GFLOP/s)": peaks.get("fp32"),
                "fp16 peak (GFLOP/s)": peaks.get("fp16"),
                "int8 peak (GOP/s)": peaks.get("int8"),
                "memory BW (GB/s)": t.mem_bandwidth_gbps,
                "memory (GB)": t.memory_gb,
                "power (W)": t.power_w,
            }
        )
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    st.caption(
        "Built-in targets carry datasheet or derived peaks as cited; targets marked "
        "'measured profile' were measured with `edgedl hardware calibrate` (their files live "
        "in the user catalog folder) and are predicted from their measured rates."
    )
    pick = st.selectbox(
        "Sources of a target's figures",
        list(catalog.targets),
        format_func=lambda i: catalog.targets[i].name,
        key="hw_target",
    )
    t = catalog.targets[pick]
    st.dataframe(
        pd.DataFrame([{"figure": k, "source": v} for k, v in t.sources.items()]), hide_index=True
    )
    if t.notes:
        st.caption(t.notes)
    if t.profile is not None:
        st.caption(f"Measured profile: {t.profile.source()} — file {catalog.origins.get(t.id)}")
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "threads": n,
                        "class": cls,
                        "rates, small → large": ", ".join(f"{p.rate:.3g}" for p in pts),
                        "unit": "GB/s" if cls in ("elementwise", "norm", "pool") else "GFLOP/s",
                        "dispatch (µs/node)": round(tr.dispatch_us, 3),
                        "call (ms)": round(tr.call_ms, 4),
                    }
                    for n, tr in t.profile.by_threads.items()
                    for cls, pts in tr.rates.items()
                ]
            ),
            hide_index=True,
        )


def _links(catalog) -> None:
    st.subheader("Network links")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "id": link.id,
                    "name": link.name,
                    "up (Mbit/s)": link.up_mbps,
                    "down (Mbit/s)": link.down_mbps,
                    "RTT (ms)": link.rtt_ms,
                    "source": link.source,
                }
                for link in catalog.links.values()
            ]
        ),
        hide_index=True,
    )


def _host() -> None:
    st.subheader("This host")
    threads = int(
        st.number_input("ORT intra-op threads", 1, max(1, os.cpu_count() or 1), 1, key="hw_threads")
    )
    if (
        ui.optional_module(
            "advisor.measure.profile", "The host fingerprint (advisor.measure.profile)"
        )
        is None
    ):
        return
    with ui.guarded("Reading the host fingerprint"):
        fp = _fingerprint(threads)
        st.dataframe(
            pd.DataFrame(
                [
                    {"field": k, "value": ", ".join(v) if isinstance(v, list) else str(v)}
                    for k, v in fp.items()
                ]
            ),
            hide_index=True,
        )
    if (
        ui.optional_module(
            "advisor.measure.calibrate", "Host calibration (advisor.measure.calibrate)"
        )
        is None
    ):
        return
    if st.button("Calibrate this host", key="calibrate"):
        st.session_state["calibrate_threads"] = threads
    if ui.state_get("calibrate_threads") == threads:
        with ui.guarded("Calibrating this host"):
            cal = _calibration(threads)
            c1, c2, c3 = st.columns(3)
            c1.metric("fp32 compute (measured_host)", f"{cal['gflops_fp32']:.1f} GFLOP/s")
            gops = cal.get("gops_int8")
            c2.metric("int8 compute (measured_host)", f"{gops:.1f} GOP/s" if gops else "—")
            c3.metric("memory bandwidth (measured_host)", f"{cal['bandwidth_gbps']:.1f} GB/s")
            st.caption(
                f"Method: {cal['method']}. "
                + (
                    "From the cache (same fingerprint and threads)."
                    if cal.get("cached")
                    else f"Measured in {cal.get('seconds', 0):.1f} s."
                )
            )


def main() -> None:
    st.title("Hardware and links")
    st.caption(
        "The catalog the advisor predicts with (data/hardware.yaml): every figure names "
        "its source. The `host` target is this machine, measured on demand."
    )
    if (
        ui.optional_module(
            "advisor.targets.catalog", "The hardware catalog (advisor.targets.catalog)"
        )
        is None
    ):
        return
    with ui.guarded("Reading the hardware catalog"):
        catalog = ui.hardware_catalog()
        _targets(catalog)
        _links(catalog)
    _host()


main()

"""Advise: pick a model, targets, link and goals; run the advisor with progress; show results."""

from __future__ import annotations

import os
from typing import Any

import streamlit as st

from app import advice_view, ui

ZOO, UPLOAD = "Zoo model", "Upload an ONNX file"
NONE = "(none)"
DEFAULT_LINK = "wifi"  # preselected when the catalog has it; any preset can be picked


@st.cache_data(show_spinner="Checking the model…", max_entries=32)
def _check_model(path: str, shapes: tuple[tuple[str, tuple[int, ...]], ...]) -> dict[str, Any]:
    """Load the model as the advisor will (checker, shapes, ORT); a summary for the page."""
    from advisor.model import load_model

    g = load_model(path, input_shapes=dict(shapes))
    return {
        "nodes": len(g.nodes),
        "flops": g.total_flops,
        "notices": list(g.notices),
        "inputs": {t.name: list(t.shape) for t in g.inputs},
        "outputs": {t.name: list(t.shape) for t in g.outputs},
    }


@st.cache_data(show_spinner=False)
def _zoo() -> list[dict[str, Any]]:
    from advisor.zoo.manifest import list_zoo

    return [
        {
            "id": z.id,
            "name": z.name,
            "accuracy": getattr(z, "accuracy", None),
            "labelled": bool(getattr(z, "labelled_data", None)),
        }
        for z in list_zoo()
    ]


def _zoo_model() -> str | None:
    if ui.optional_attr("advisor.zoo.manifest", "list_zoo", "The model zoo") is None:
        return None
    models = {z["id"]: z for z in _zoo()}
    if not models:
        st.warning("The zoo is empty: build it with `make zoo`, or upload an ONNX file.")
        return None

    def label(i: str) -> str:
        z = models[i]
        acc = f", accuracy {z['accuracy']:.1%}" if isinstance(z["accuracy"], float) else ""
        return f"{z['name']} ({i}{acc})"

    ids = list(models)
    wanted = st.query_params.get("model")  # deep link: /advise?model=digits_cnn
    zoo_id = st.selectbox(
        "Zoo model",
        ids,
        format_func=label,
        key="zoo_id",
        index=ids.index(wanted) if wanted in ids else 0,
    )
    if models[zoo_id]["labelled"]:
        st.caption(
            "This zoo model ships held-out labelled data: fidelity is measured as task "
            "accuracy unless you upload other data below."
        )
    return zoo_id


def _shapes_for(path, dims: dict[str, list[int | str]]) -> dict[str, list[int]] | None:
    """Ask for every input with a symbolic dimension; None while an entry is malformed."""
    symbolic = {n: d for n, d in dims.items() if any(isinstance(x, str) for x in d)}
    shapes: dict[str, list[int]] = {}
    if not symbolic:
        return shapes
    st.markdown(
        "**Symbolic input shapes.** Give concrete sizes for these inputs (a leading "
        "batch dimension left blank is set to 1)."
    )
    ok = True
    for name, d in symbolic.items():
        shown = "x".join(str(x) for x in d)
        text = st.text_input(
            f"Shape of input `{name}` (model says {shown})",
            key=f"shape_{name}",
            placeholder="e.g. " + "x".join(str(x) if isinstance(x, int) else "1" for x in d),
        )
        if text.strip():
            try:
                shapes[name] = ui.parse_shape(text)
            except ValueError as exc:
                st.error(f"Input `{name}`: {exc}.")
                ok = False
    return shapes if ok else None


def _uploaded_model() -> tuple[str, dict[str, list[int]]] | None:
    st.caption(
        f"Upload limit: {ui.MAX_MODEL_MB} MB. One self-contained .onnx file "
        "(weights inside, no external-data files)."
    )
    up = st.file_uploader(
        "ONNX model", type=["onnx"], max_upload_size=ui.MAX_MODEL_MB, key="upload_model"
    )
    if up is None:
        st.info("Upload an .onnx file to continue, or pick a zoo model.")
        return None
    data = up.getvalue()
    problem = ui.check_upload(up.name, data)
    if problem:
        st.error(problem)
        return None
    path = ui.save_upload(data, ".onnx")
    shapes = _shapes_for(path, ui.input_dims(path))
    if shapes is None:
        return None
    from advisor.errors import ShapeError

    try:
        summary = _check_model(str(path), tuple((k, tuple(v)) for k, v in shapes.items()))
    except ShapeError as exc:
        st.error(
            f"The model's input shapes cannot be resolved: {exc}. Enter the missing "
            "dimensions in the shape fields above (e.g. 1x3x224x224)."
        )
        return None
    st.success(
        f"{up.name}: {summary['nodes']} nodes, {summary['flops'] / 1e6:.1f} MFLOPs; "
        f"inputs {summary['inputs']}, outputs {summary['outputs']}"
    )
    for note in summary["notices"]:
        st.caption(note)
    return str(path), shapes


def _targets(catalog) -> dict[str, str | None]:
    by_tier: dict[str, list[str]] = {"device": [], "edge": [], "cloud": []}
    for tid, t in catalog.targets.items():
        by_tier[t.tier].append(tid)

    def name(i: str) -> str:
        if i == "host":
            return "This host (measured here, calibrated)"
        return NONE if i == NONE else f"{catalog.targets[i].name} ({i})"

    c1, c2, c3 = st.columns(3)
    device = c1.selectbox(
        "End device", [*by_tier["device"], "host"], format_func=name, key="device"
    )
    edge = c2.selectbox(
        "Edge server",
        [NONE, *by_tier["edge"]],
        format_func=name,
        key="edge",
        index=1 if by_tier["edge"] else 0,
    )
    cloud = c3.selectbox("Cloud server", [NONE, *by_tier["cloud"]], format_func=name, key="cloud")
    return {
        "device": device,
        "edge": None if edge == NONE else edge,
        "cloud": None if cloud == NONE else cloud,
    }


def _link(catalog, cloud_and_edge: bool) -> dict[str, Any]:
    links = catalog.links
    mode = st.radio(
        "Network link (device ↔ server)", ["Preset", "Custom"], horizontal=True, key="link_mode"
    )
    out: dict[str, Any] = {}
    if mode == "Preset":
        ids = list(links)
        lid = st.selectbox(
            "Link preset",
            ids,
            index=ids.index(DEFAULT_LINK) if DEFAULT_LINK in ids else 0,
            key="link",
            format_func=lambda i: (
                f"{links[i].name} — up {links[i].up_mbps:g} / down {links[i].down_mbps:g} Mbit/s, "
                f"RTT {links[i].rtt_ms:g} ms"
            ),
        )
        st.caption(f"Source: {links[lid].source}")
        out["link"] = lid
    else:
        c1, c2, c3 = st.columns(3)
        out["up_mbps"] = c1.number_input(
            "Uplink (Mbit/s)", min_value=0.001, value=10.0, key="up_mbps"
        )
        out["down_mbps"] = c2.number_input(
            "Downlink (Mbit/s)", min_value=0.001, value=50.0, key="down_mbps"
        )
        out["rtt_ms"] = c3.number_input(
            "Round-trip time (ms)", min_value=0.0, value=20.0, key="rtt_ms"
        )
    if cloud_and_edge:
        ids = list(links)
        default = ids.index("ethernet") if "ethernet" in ids else 0
        out["cloud_link"] = st.selectbox(
            "Edge ↔ cloud link",
            ids,
            index=default,
            key="cloud_link",
            format_func=lambda i: links[i].name,
        )
    return out


def _goals() -> dict[str, Any]:
    c1, c2, c3 = st.columns(3)
    latency = c1.number_input(
        "Latency target (ms, end to end)", min_value=0.001, value=10.0, key="latency_ms"
    )
    use_budget = c2.checkbox("Limit the accuracy drop (needs labelled data)", key="use_budget")
    budget = c2.number_input(
        "Accuracy budget (percentage points)",
        0.0,
        100.0,
        1.0,
        step=0.1,
        key="accuracy_budget",
        disabled=not use_budget,
    )
    agreement = c3.slider(
        "Min top-1 agreement with FP32 (without labels)", 0.5, 1.0, 0.99, 0.005, key="min_agreement"
    )
    return {
        "latency_ms": latency,
        "accuracy_budget": budget if use_budget else None,
        "min_agreement": agreement,
    }


def _labelled_data() -> str | None | bool:
    """Path of an uploaded .npz, None when none, False when the upload is unusable."""
    up = st.file_uploader(
        f"Labelled data (.npz with the model's inputs and labels `y`; optional; "
        f"up to {ui.MAX_DATA_MB} MB)",
        type=["npz"],
        max_upload_size=ui.MAX_DATA_MB,
        key="upload_data",
    )
    if up is None:
        return None
    data = up.getvalue()
    if len(data) > ui.MAX_DATA_MB * 2**20:
        st.error(f"{up.name} is over the {ui.MAX_DATA_MB} MB limit; upload fewer samples.")
        return False
    if not data.startswith(b"PK"):
        st.error(
            f"{up.name} is not an .npz archive. Save it with numpy.savez(path, "
            "<input name>=X, y=labels) and upload that file."
        )
        return False
    return str(ui.save_upload(data, ".npz"))


def _advanced() -> dict[str, Any]:
    with st.expander("Measurement settings"):
        c1, c2, c3 = st.columns(3)
        runs = c1.number_input("Timed runs per measurement", 3, 1000, 20, key="runs")
        threads = c2.number_input(
            "ORT intra-op threads", 1, max(1, os.cpu_count() or 1), 1, key="threads"
        )
        samples = c3.number_input("Max evaluation samples", 1, 100_000, 512, key="max_eval")
        kinds: list[str] | None = None
        plans = ui.optional_module("advisor.plans", "The plan registry")
        if plans is not None and hasattr(plans, "load_builtins"):
            known = list(plans.load_builtins())
            picked = st.multiselect("Plan kinds to try", known, default=known, key="plan_kinds")
            kinds = picked if picked and len(picked) < len(known) else None
    return {
        "runs": int(runs),
        "threads": int(threads),
        "max_eval_samples": int(samples),
        "plans": kinds,
    }


def _run(advise, request) -> None:
    with st.status("Running the advisor…", expanded=True) as status:
        bar = st.progress(0.0, text="starting")
        seen: list[str] = []

        def progress(stage: str, fraction: float) -> None:
            bar.progress(min(max(float(fraction), 0.0), 1.0), text=f"{stage} — {fraction:.0%}")
            if not seen or seen[-1] != stage:
                seen.append(stage)
                st.write(f"▸ {stage}")

        try:
            advice = advise(request, progress=progress)
        except BaseException:
            status.update(label="The advisor stopped", state="error", expanded=True)
            raise
        total = advice.stage_seconds.get("total")
        status.update(
            label=f"Done{f' in {total:.1f} s' if total else ''}: {len(advice.plans)} plans",
            state="complete",
            expanded=False,
        )
    st.session_state["advice"] = advice
    st.session_state["advice_run_id"] = advice_view.save_run(advice)


def main() -> None:
    st.title("Advise: plan, build and validate a deployment")
    st.caption(
        "Every ranked plan is built and run in ONNX Runtime on this machine. Latencies "
        "are labelled: measured_host (run here), predicted_target (scaled to the target "
        "from host measurements and the hardware catalog), all in ms."
    )
    advise = ui.optional_attr("advisor", "advise", "The advisor (advisor.advise)")
    catalog = None
    with ui.guarded("Reading the hardware catalog"):
        if ui.optional_module("advisor.targets.catalog", "The hardware catalog") is not None:
            catalog = ui.hardware_catalog()
    if advise is None or catalog is None:
        return

    st.subheader("Model")
    source = st.radio(
        "Model source",
        [ZOO, UPLOAD],
        horizontal=True,
        key="model_source",
        label_visibility="collapsed",
    )
    model: str | None = None
    shapes: dict[str, list[int]] = {}
    with ui.guarded("Reading the model"):
        if source == ZOO:
            model = _zoo_model()
        else:
            picked = _uploaded_model()
            if picked is not None:
                model, shapes = picked
    st.subheader("Where it may run")
    targets = _targets(catalog)
    link = _link(catalog, bool(targets["edge"] and targets["cloud"]))
    st.subheader("Goals and data")
    goals = _goals()
    data = _labelled_data()
    settings = _advanced()

    clicked = st.button(
        "Run advice", type="primary", disabled=model is None or data is False, key="run_advice"
    )
    if clicked and model is not None and data is not False:
        from advisor import AdviceRequest

        with ui.guarded("Running the advice"):
            request = AdviceRequest(
                model=model,
                input_shapes=shapes,
                data=data or None,
                **targets,
                **link,
                **goals,
                **settings,
            )
            _run(advise, request)

    advice = ui.state_get("advice")
    if advice is not None:
        with ui.guarded("Showing the results"):
            advice_view.show(advice, ui.state_get("advice_run_id"))


main()

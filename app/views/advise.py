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
    path = ui.save_upload(data, ".onnx", name=up.name)
    shapes = _shapes_for(path, ui.input_dims(path))
    if shapes is None:
        return None
    from advisor.errors import ShapeError

    try:
        summary = _check_model(str(path), tuple((k, tuple(v)) for k, v in shapes.items()))
    except ShapeError as exc:
        st.error(
            f"The model's input shapes cannot be resolved: {ui.web_text(str(exc))}. Enter the "
            "missing dimensions in the shape fields above (e.g. 1x3x224x224)."
        )
        return None

    def tensors(specs: dict[str, list[int]]) -> str:
        return ", ".join(f"`{n}` {'×'.join(map(str, d))}" for n, d in specs.items())

    st.success(
        f"{path.name}: {summary['nodes']} nodes, {summary['flops'] / 1e6:.1f} MFLOPs; "
        f"inputs {tensors(summary['inputs'])}; outputs {tensors(summary['outputs'])}"
    )
    for note in summary["notices"]:
        st.caption(ui.web_text(note))
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


class Problems:
    """Invalid inputs found while the form is drawn: each shown under its field, and all of
    them next to the Run button, which they block."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def check(self, where, label: str, field: str, value: Any) -> Any:
        """`value` after the API's rule for `field` (AdviceRequest); an error under the field
        when it breaks it."""
        from advisor import AdviceRequest

        why = ui.field_problem(AdviceRequest, field, value)
        if why:
            where.error(f"{label}: {why.lower()}.", icon=":material/block:")
            self.items.append(f"{label} ({why.lower()})")
        return value


def _link(catalog, cloud_and_edge: bool, problems: Problems) -> dict[str, Any]:
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
        for col, label, field, default in (
            (c1, "Uplink (Mbit/s)", "up_mbps", 10.0),
            (c2, "Downlink (Mbit/s)", "down_mbps", 50.0),
            (c3, "Round-trip time (ms)", "rtt_ms", 20.0),
        ):
            # no min_value: an out-of-range entry is kept and refused here, with the reason,
            # instead of the widget silently keeping the previous value
            value = col.number_input(label, value=default, key=field, format="%g")
            out[field] = problems.check(col, label, field, value)
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


PREFER_LABELS = {
    "accuracy": "Least accuracy lost, then the simplest (default)",
    "latency": "Fastest",
    "size": "Smallest model on the device",
}


def _goals(labelled: bool, problems: Problems) -> dict[str, Any]:
    from advisor.validate.rank import DEFAULT_ACCURACY_BUDGET, DEFAULT_PREFER, PREFER_RULES

    c1, c2, c3 = st.columns(3)
    latency = c1.number_input(
        "Latency target (ms, end to end)", value=10.0, key="latency_ms", format="%g"
    )
    problems.check(c1, "Latency target", "latency_ms", latency)
    budget = c2.number_input(
        "Max accuracy drop (percentage points)",
        value=DEFAULT_ACCURACY_BUDGET,
        step=0.1,
        key="accuracy_budget",
        format="%g",
        disabled=not labelled,
        help="Task accuracy measured on labelled data; a plan losing more is rejected.",
    )
    if labelled:
        problems.check(c2, "Max accuracy drop", "accuracy_budget", budget)
        c2.caption(
            f"Applies: labelled data measures task accuracy (default "
            f"{DEFAULT_ACCURACY_BUDGET:g} point)."
        )
    else:
        c2.caption("Needs labelled data: without it, the agreement with FP32 applies instead.")
    agreement = c3.slider(
        "Min top-1 agreement with FP32",
        0.5,
        1.0,
        0.99,
        0.005,
        key="min_agreement",
        disabled=labelled,
    )
    c3.caption(
        "Not used: with labelled data the accuracy budget decides."
        if labelled
        else "Applies: no labels, so fidelity is agreement with the FP32 model's top-1."
    )
    prefers = list(PREFER_LABELS)
    prefer = st.radio(
        "Recommend, among plans that meet the target and the budget",
        prefers,
        index=prefers.index(DEFAULT_PREFER),
        format_func=PREFER_LABELS.__getitem__,
        horizontal=True,
        key="prefer",
    )
    st.caption(f"Rule: {PREFER_RULES[prefer]}.")
    return {
        "latency_ms": latency,
        "accuracy_budget": budget if labelled else None,
        "min_agreement": agreement,
        "prefer": prefer,
    }


def _labelled_data() -> tuple[str, str] | None | bool:
    """(path, file name) of an uploaded .npz, None when none, False when it is unusable."""
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
    return str(ui.save_upload(data, ".npz", name=up.name)), up.name


def _npz_has_labels(path: str) -> bool:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as archive:
            return bool({"y", "labels"} & set(archive.files))
    except (OSError, ValueError):
        return False


def _advanced(problems: Problems) -> dict[str, Any]:
    with st.expander("Measurement settings"):
        c1, c2, c3 = st.columns(3)
        runs = c1.number_input("Timed runs per measurement", value=20, step=1, key="runs")
        problems.check(c1, "Timed runs", "runs", runs)
        threads = c2.number_input(
            "ORT intra-op threads", 1, max(1, os.cpu_count() or 1), 1, key="threads"
        )
        samples = c3.number_input("Max evaluation samples", value=512, step=1, key="max_eval")
        problems.check(c3, "Max evaluation samples", "max_eval_samples", samples)
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


# --- background runs -----------------------------------------------------------------------


def _describe(exc: BaseException) -> str:
    """One line for a failed run: the packages' own errors as they are, a bug said to be one."""
    from pydantic import ValidationError

    if isinstance(exc, (*ui.known_errors(), ValidationError)):
        return ui.web_text(ui.error_text(exc))
    if isinstance(exc, (FileNotFoundError, PermissionError)):
        return f"{exc.strerror or exc}: {exc.filename}"
    ui.log.error("advice run failed", exc_info=exc)
    return (
        f"failed unexpectedly ({type(exc).__name__}: {exc}). This is a bug in EdgeDL "
        "Advisor; the server log has the details — please report it."
    )


def _store(advice) -> str | None:
    from advisor.runs import RunStore

    return str(RunStore().save(advice))


@st.cache_resource(show_spinner=False)
def _board():
    """The server's advice jobs, shared by every session (one measuring run at a time)."""
    from advisor import advise
    from app.jobs import JobBoard

    return JobBoard(runner=advise, saver=_store, describe_error=_describe)


def _job_box(job) -> None:
    """The running (or just finished) job: live stage, elapsed time, stages so far."""
    if job.running:
        waiting = job.started is None
        st.info(
            f"**Running the advisor on {job.label}** — {job.stage}"
            f"{'' if waiting else f' ({job.stage_elapsed():.0f} s in this stage)'}; "
            f"{job.elapsed():.0f} s so far. You can change the inputs meanwhile: the run "
            "continues and is stored in Runs when it finishes.",
            icon=":material/hourglass_top:",
        )
        st.progress(job.fraction, text=f"{job.stage} — {job.fraction:.0%}")
        if job.steps:
            st.caption(" → ".join(f"{name} ({t:.0f} s)" for name, t in job.steps))
    elif job.error:
        st.error(f"The advice run on {job.label} stopped: {job.error}")


def _poll(job_id: str) -> None:
    """Redraw the job box every second while it runs; a full rerun when it finishes."""
    job = _board().get(job_id)
    if job is None:
        return
    _job_box(job)
    if not job.running and ui.state_get("shown_job") != job.id:
        st.rerun()


def _pick_up(job) -> None:
    """Move a finished job's results into this session (once)."""
    if job is None or job.running or ui.state_get("shown_job") == job.id:
        return
    st.session_state["shown_job"] = job.id
    if job.advice is not None:
        st.session_state["advice"] = job.advice
        st.session_state["advice_run_id"] = job.run_id
        st.session_state["advice_key"] = job.key
        st.session_state["advice_label"] = job.label
        if job.save_error:
            st.warning(f"The advice is shown but could not be stored as a run: {job.save_error}")


def _request(model, shapes, data, targets, link, goals, settings):
    """The AdviceRequest for the inputs, or (None, why) when the API refuses them."""
    from pydantic import ValidationError

    from advisor import AdviceRequest

    try:
        return AdviceRequest(
            model=model,
            input_shapes=shapes,
            data=data,
            **targets,
            **link,
            **goals,
            **settings,
        ), None
    except ValidationError as exc:
        return None, ui.web_text(ui.error_text(exc))


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

    problems = Problems()
    st.subheader("Model")
    source = st.radio(
        "Model source",
        [ZOO, UPLOAD],
        horizontal=True,
        key="model_source",
        label_visibility="collapsed",
    )
    model: str | None = None
    label = ""
    labelled = False
    shapes: dict[str, list[int]] = {}
    with ui.guarded("Reading the model"):
        if source == ZOO:
            model = _zoo_model()
            label = model or ""
            labelled = bool(model and any(z["id"] == model and z["labelled"] for z in _zoo()))
        else:
            picked = _uploaded_model()
            if picked is not None:
                model, shapes = picked
                label = os.path.basename(model)
    st.subheader("Where it may run")
    targets = _targets(catalog)
    link = _link(catalog, bool(targets["edge"] and targets["cloud"]), problems)
    st.subheader("Goals and data")
    data = _labelled_data()
    data_path = data[0] if isinstance(data, tuple) else None
    if data_path is not None:
        labelled = _npz_has_labels(data_path)
    goals = _goals(labelled, problems)
    settings = _advanced(problems)

    request, why = (None, None)
    if model is not None and data is not False and not problems.items:
        request, why = _request(model, shapes, data_path, targets, link, goals, settings)
    blocked = (
        "choose a model first"
        if model is None
        else "the labelled data cannot be used (see above)"
        if data is False
        else ("fix " + "; ".join(problems.items))
        if problems.items
        else why
    )
    board = _board()
    job = board.get(ui.state_get("job_id"))
    clicked = st.button("Run advice", type="primary", disabled=request is None, key="run_advice")
    if blocked:
        st.caption(f":material/block: Run is blocked: {blocked}.")
    if clicked and request is not None:
        job = board.submit(request, label=label)
        st.session_state["job_id"] = job.id
    if job is not None:
        if job.running:
            st.fragment(_poll, run_every=1.0)(job.id)
        else:
            _pick_up(job)
            _job_box(job)

    advice = ui.state_get("advice")
    if advice is not None:
        from app.jobs import request_key

        current = request_key(request) if request is not None else None
        stale = current != ui.state_get("advice_key")
        with ui.guarded("Showing the results"):
            advice_view.show(
                advice,
                ui.state_get("advice_run_id"),
                label=ui.state_get("advice_label"),
                stale=stale,
            )


main()

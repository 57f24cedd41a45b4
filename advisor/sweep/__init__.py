"""Design-space sweeps: many models × targets × links × latency targets in one call, on Ray.

>>> from advisor.sweep import load_spec, sweep
>>> result = sweep(load_spec("sweep.yaml"))   # doctest: +SKIP
>>> result.rows[0].recommended   # doctest: +SKIP
'quantize.static_int8'

Every cell is an ordinary advice run in the run store, tagged with the sweep's id and the
cell's content key; re-running the same SPEC advises only the cells not stored yet.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from advisor.runs import RunStore
from advisor.sweep.report import CellRow, SweepResult, cell_row, heatmap_svg, write_outputs
from advisor.sweep.run import SweepProgress, run_cells
from advisor.sweep.spec import SpecError, SweepSpec, load_spec

__all__ = [
    "CellRow",
    "SpecError",
    "SweepProgress",
    "SweepResult",
    "SweepSpec",
    "heatmap_svg",
    "load_spec",
    "stored_result",
    "sweep",
    "sweep_rows",
]


def sweep(
    spec: SweepSpec,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    store: RunStore | None = None,
    out_dir: str | Path | None = None,
    progress: Callable[[SweepProgress], None] | None = None,
) -> SweepResult:
    """Advise every cell of `spec` not yet in the run store, on Ray (this machine, or the
    cluster at `address`), then write the table and the report to `out_dir` (default: the
    cache folder's sweeps/<sweep id>/)."""
    spec.check_ids()
    store = store if store is not None else RunStore()
    sid = spec.sweep_id()
    if out_dir is None:
        from advisor.cache import cache_dir

        out_dir = cache_dir() / "sweeps" / sid
    out = Path(out_dir)
    t0 = time.perf_counter()
    from advisor.sweep.spec import model_digest

    digests = {m: model_digest(m) for m in spec.models}
    store.record_sweep(
        sid,
        spec.name,
        spec.model_dump_json(),
        [c.key(digests[c.model], spec) for c in spec.cells()],
    )
    ran, already, failures = run_cells(
        spec, store, sid, address=address, num_cpus=num_cpus, out_dir=out, progress=progress
    )
    result = stored_result(spec, store, advised_now=ran, failures=failures)
    result = result.model_copy(
        update={"seconds": time.perf_counter() - t0, "already_stored": already}
    )
    return result.model_copy(update={"outputs": write_outputs(result, out)})


def stored_result(
    spec: SweepSpec,
    store: RunStore,
    *,
    advised_now: int = 0,
    failures: list[str] | None = None,
) -> SweepResult:
    """The sweep's rows from the run store: one per cell of `spec` that is stored."""
    from advisor.sweep.spec import model_digest

    sid = spec.sweep_id()
    digests = {m: model_digest(m) for m in spec.models}
    keys = [c.key(digests[c.model], spec) for c in spec.cells()]
    stored = store.stored_cells(keys)
    records = {c["cell_key"]: c for c in store.sweep_cells()}
    rows = []
    for k in keys:
        if k not in stored:
            continue
        rec = records.get(k, {})
        rows.append(
            cell_row(store.get(stored[k]), stored[k], sid, k, rec.get("record") or {})  # type: ignore[arg-type]
        )
    return SweepResult(
        sweep_id=sid,
        name=spec.name,
        cells=len(keys),
        advised_now=advised_now,
        no_plan=sum(1 for r in rows if r.recommended is None),
        failures=failures or [],
        notices=_notices(rows, len(keys)),
        seconds=0.0,
        rows=rows,
    )


def sweep_rows(store: RunStore, sweep_id: str) -> list[CellRow]:
    """The stored rows of a recorded sweep, read back from the run store alone (no SPEC
    needed); a cell stored by another sweep with the same content key is included."""
    keys = store.sweep_members(sweep_id)
    stored = store.stored_cells(keys)
    records = {str(c["cell_key"]): c["record"] for c in store.sweep_cells()}
    rows = []
    for k in keys:
        if k in stored:
            rec = records.get(k)
            rows.append(
                cell_row(
                    store.get(stored[k]),
                    stored[k],
                    sweep_id,
                    k,
                    rec if isinstance(rec, dict) else {},
                )
            )
    return rows


def _notices(rows: list[CellRow], total: int) -> list[str]:
    out = []
    fps = {r.fingerprint_key for r in rows if r.fingerprint_key}
    if len(fps) > 1:
        out.append(
            f"cells were measured on {len(fps)} machines with different environment "
            f"fingerprints ({', '.join(sorted(fps))}): their measured_host figures do not "
            "compare across machines; see each row's fingerprint_key"
        )
    if len(rows) < total:
        out.append(f"{total - len(rows)} of {total} cells are not stored (failed or not run)")
    return out

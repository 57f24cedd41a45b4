"""Fidelity: running a plan's sessions on the evaluation inputs and comparing with FP32.

`reference_outputs` runs the FP32 model; `run_pipeline` / `run_cascade` run a plan's compute,
transfer and exit steps in order; `fidelity` scores the outputs (max abs error, cosine, top-1
agreement, task accuracy when labelled).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TypeVar

import numpy as np

from advisor.advice import Fidelity
from advisor.graph.exits import entropy
from advisor.graph.model import ModelGraph
from advisor.measure.memo import MeasurementMemo, feeds_key
from advisor.measure.timing import make_session
from advisor.plans import Candidate, Compute, Exit
from advisor.validate.budget import workers

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class EvalSet:
    inputs: list[dict[str, np.ndarray]]  # one dict per sample, batch of 1
    labels: np.ndarray | None
    reference: list[list[np.ndarray]]  # FP32 outputs per sample, in graph output order
    baseline_accuracy: float | None
    primary: int = 0  # the output standing for the model's prediction (a multi-exit model's
    # final exit), used for top-1 agreement and accuracy

    @cached_property
    def key(self) -> str:
        """A content key of the set (`eval_key`)."""
        return _eval_key(self)


def feeds_for_session(session, env: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {i.name: env[i.name] for i in session.get_inputs()}


def run_pipeline(steps, sessions, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run compute and transfer steps in order; returns every tensor produced. Exit steps
    do not stop it: every step runs (see `run_cascade`)."""
    return run_cascade(steps, sessions, inputs, stop=False)[0]


def run_cascade(
    steps, sessions, inputs: dict[str, np.ndarray], stop: bool = True
) -> tuple[dict[str, np.ndarray], int | None]:
    """Run the steps in order until an Exit step lets the input leave (entropy of its
    softmax below the threshold, or the plan's last Exit). Returns (every tensor produced,
    index among the plan's Exit steps of the exit taken, or None without Exit steps)."""
    env = dict(inputs)
    it = iter(sessions)
    exit_index = -1
    for step in steps:
        if isinstance(step, Compute):
            sess = next(it)
            outs = sess.run(None, feeds_for_session(sess, env))
            env.update({o.name: v for o, v in zip(sess.get_outputs(), outs, strict=True)})
        elif isinstance(step, Exit):
            exit_index += 1
            if stop and float(entropy(env[step.tensor]).reshape(-1)[0]) < step.threshold:
                return env, exit_index
    return env, (exit_index if exit_index >= 0 else None)


def per_input(run: Callable[[T], R], inputs: Sequence[T], threads: int = 1) -> list[R]:
    """`run` on every input, in order, on as many Python threads as this machine has cores
    for sessions of `threads` intra-op threads each (ONNX Runtime's `run` is thread-safe and
    releases the GIL). Nothing that calls this is timed: evaluation inputs are run while
    other plans build, and a core one worker leaves idle (a build waiting for memory, the
    last plan's evaluation) runs the next input instead of waiting."""
    n = min(len(inputs), workers(threads))
    if n <= 1:
        return [run(x) for x in inputs]
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="eval") as pool:
        return list(pool.map(run, inputs))


def _threads(sessions) -> int:
    """The intra-op threads of the sessions (1 when unknown)."""
    return max(1, int(sessions[0].get_session_options().intra_op_num_threads)) if sessions else 1


def reference_outputs(
    graph: ModelGraph,
    inputs: list[dict[str, np.ndarray]],
    threads: int,
    memo: MeasurementMemo | None = None,
) -> list[list[np.ndarray]]:
    """The FP32 model's outputs per sample; with a `memo`, reused for the same model and
    inputs earlier in this process."""
    key = None
    if memo is not None:
        h = hashlib.sha256(graph.digest.encode())
        for x in inputs:
            h.update(feeds_key(x).encode())
        key = (h.hexdigest(), threads)
        if key in memo.references:
            return memo.references[key]  # type: ignore[no-any-return]
    sess = make_session(graph.serialized() or graph.model, threads=threads)
    out = per_input(lambda x: sess.run(None, x), inputs, threads)
    if key is not None and memo is not None:
        memo.references[key] = out
    return out


def eval_key(ev: EvalSet) -> str:
    """A content key of the evaluation set (inputs, labels, primary output), computed once
    per EvalSet (a sweep's cells share theirs)."""
    return ev.key


def _eval_key(ev: EvalSet) -> str:
    h = hashlib.sha256(f"{ev.primary}|{ev.baseline_accuracy}|".encode())
    for x in ev.inputs:
        h.update(feeds_key(x).encode())
    if ev.labels is not None:
        h.update(np.ascontiguousarray(ev.labels).tobytes())
    return h.hexdigest()


def accuracy(logits: list[np.ndarray], labels: np.ndarray) -> float:
    pred = np.array([int(np.argmax(o.reshape(-1))) for o in logits])
    return float(np.mean(pred == labels[: len(pred)]))


def _is_classifier(out: np.ndarray) -> bool:
    return out.ndim >= 2 and out.shape[-1] > 1 and out.size == out.shape[-1]


def fidelity(outputs: list[list[np.ndarray]], ev: EvalSet) -> Fidelity:
    n = len(outputs)
    max_err = max(
        float(np.max(np.abs(o.astype(np.float64) - r.astype(np.float64))))
        for got, ref in zip(outputs, ev.reference, strict=True)
        for o, r in zip(got, ref, strict=True)
    )
    k = ev.primary
    a = np.concatenate([g[k].astype(np.float64).ravel() for g in outputs])
    b = np.concatenate([r[k].astype(np.float64).ravel() for r in ev.reference[:n]])
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    cosine = float(a @ b / denom) if denom else 1.0
    top1 = acc = drop = None
    if _is_classifier(ev.reference[0][k]):
        top1 = float(
            np.mean(
                [
                    np.argmax(g[k]) == np.argmax(r[k])
                    for g, r in zip(outputs, ev.reference, strict=False)
                ]
            )
        )
        if ev.labels is not None:
            acc = accuracy([g[k] for g in outputs], ev.labels)
            if ev.baseline_accuracy is not None:
                drop = round((ev.baseline_accuracy - acc) * 100, 4)
    return Fidelity(
        samples=n,
        max_abs_error=max_err,
        cosine=cosine,
        top1_agreement=top1,
        accuracy=acc,
        baseline_accuracy=ev.baseline_accuracy,
        accuracy_drop_points=drop,
    )


@dataclass(frozen=True)
class EvalRun:
    outputs: list[list[np.ndarray]]
    compare: EvalSet  # the reference the outputs line up with
    first_env: dict[str, np.ndarray]
    taken: np.ndarray | None  # inputs leaving at each Exit step (cascades only)
    prediction_error: float | None  # exit logits vs the full model's same output


def run_eval(
    cand: Candidate, sessions, ev: EvalSet, names: list[str], spread: bool = True
) -> EvalRun:
    """Run the plan on every evaluation input (`spread`: over the cores, `per_input`; else
    one after another, for a caller that runs several plans at once). A plan that stands
    for the model with one tensor (an early exit, or a cascade's exit taken per input) is
    compared on that tensor against the model's prediction output."""
    exits = [s for s in cand.steps if isinstance(s, Exit)]
    single = cand.prediction is not None or bool(exits)
    taken = np.zeros(len(exits), dtype=np.int64) if exits else None
    outputs, first_env, err = [], None, None
    # of every input but the first, only the tensors compared below are kept
    wanted = {*names, *(e.tensor for e in exits), *([cand.prediction] if cand.prediction else [])}

    def one(ix: tuple[int, dict[str, np.ndarray]]) -> tuple[dict[str, np.ndarray], int | None]:
        env, k = run_cascade(cand.steps, sessions, ix[1])
        return (env if ix[0] == 0 else {t: v for t, v in env.items() if t in wanted}), k

    indexed = list(enumerate(ev.inputs))
    runs = per_input(one, indexed, _threads(sessions)) if spread else [one(x) for x in indexed]
    for i, (env, k) in enumerate(runs):
        first_env = first_env or env
        if not single:
            outputs.append([env[n] for n in names])
            continue
        name = exits[k].tensor if taken is not None and k is not None else cand.prediction
        if taken is not None and k is not None:
            taken[k] += 1
        got = env[str(name)]
        outputs.append([got])
        if name in names:
            ref = ev.reference[i][names.index(str(name))]
            e = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64))))
            err = e if err is None else max(err, e)
    compare = (
        ev
        if not single
        else replace(ev, reference=[[r[ev.primary]] for r in ev.reference], primary=0)
    )
    return EvalRun(outputs, compare, first_env or {}, taken, err)

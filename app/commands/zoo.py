"""`edgedl zoo list|show`: the bundled model zoo (data/zoo/)."""

from __future__ import annotations

import click

from app.commands._common import echo_json, json_option


@click.group("zoo")
def zoo() -> None:
    """The bundled model zoo: small ONNX models with measured accuracy where trained."""


def _accuracy(value: float | None) -> str:
    return f"{value:.2%}" if value is not None else "untrained"


@zoo.command("list")
@json_option
def list_cmd(as_json: bool) -> None:
    """List the zoo models."""
    from advisor.zoo.manifest import list_zoo

    models = list_zoo()
    if as_json:
        echo_json([m.to_dict() for m in models])
        return
    header = f"{'ID':<21} {'FAMILY':<12} {'PARAMS':>9} {'MMACS':>8} {'SIZE MB':>8}  ACCURACY"
    click.echo(header)
    for m in models:
        click.echo(
            f"{m.id:<21} {m.family:<12} {m.params:>9,} {m.macs / 1e6:>8.1f} "
            f"{m.file_bytes / 1e6:>8.2f}  {_accuracy(m.accuracy)}"
        )


@zoo.command("show")
@click.argument("zoo_id")
@json_option
def show_cmd(zoo_id: str, as_json: bool) -> None:
    """Show one zoo model: what it is, its inputs and outputs, and its graph summary."""
    from advisor.model import load_model
    from advisor.zoo.manifest import get_zoo

    entry = get_zoo(zoo_id)
    graph = load_model(entry.path)
    cuts = graph.cuts()
    summary = {
        "nodes": len(graph.nodes),
        "flops": graph.total_flops,
        "macs": graph.total_macs,
        "params_bytes": graph.total_params_bytes,
        "cuts": len(cuts),
        "multi_tensor_cuts": sum(c.multi for c in cuts),
        "loaded_inputs": [
            {"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in graph.inputs
        ],
        "notices": list(graph.notices),
    }
    if as_json:
        echo_json({**entry.to_dict(), "graph": summary})
        return
    click.echo(f"{entry.name}  [{entry.id}]")
    click.echo(f"  task:        {entry.task}")
    click.echo(f"  family:      {entry.family}")
    click.echo(f"  description: {entry.description}")
    click.echo(f"  file:        {entry.path} ({entry.file_bytes / 1e6:.2f} MB)")
    for t in entry.inputs:
        click.echo(f"  input:       {t.name} {'x'.join(map(str, t.shape))} {t.dtype}")
    for t in entry.outputs:
        click.echo(f"  output:      {t.name} {'x'.join(map(str, t.shape))} {t.dtype}")
    click.echo(f"  accuracy:    {_accuracy(entry.accuracy)}"
               + (f" ({entry.accuracy_method})" if entry.accuracy_method else ""))  # fmt: skip
    for e in entry.exits:
        click.echo(f"  exit:        {e.name} -> {e.output}, {_accuracy(e.accuracy)} ({e.branch})")
    click.echo(
        f"  graph:       {summary['nodes']} nodes, {graph.total_flops / 1e6:,.1f} MFLOPs, "
        f"{graph.total_params_bytes / 1e6:.2f} MB params, {summary['cuts']} cuts "
        f"({summary['multi_tensor_cuts']} multi-tensor)"
    )
    click.echo(f"  torch:       {entry.torch_builder}")
    click.echo(f"  notes:       {entry.notes}")

"""`edgedl agent ...`: run the inference/measurement server, or ask one for its health."""

from __future__ import annotations

import click

from app.commands._common import echo_json, json_option

MiB = 1024 * 1024


@click.group("agent")
def agent() -> None:
    """The inference server that runs split sub-models and measures them on a target."""


@agent.command("serve")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind; anything but loopback exposes the agent (a warning is shown).",
)
@click.option("--port", default=8765, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--token",
    envvar="EDGEDL_AGENT_TOKEN",
    show_envvar=True,
    help="Bearer token every request but /health must carry (required).",
)
@click.option(
    "--store",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder for uploaded models [default: <cache dir>/agent_models].",
)
@click.option(
    "--max-model-mb",
    default=256.0,
    show_default=True,
    type=click.FloatRange(min=0.001),
    help="Largest ONNX upload accepted.",
)
@click.option(
    "--max-body-mb",
    default=64.0,
    show_default=True,
    type=click.FloatRange(min=0.001),
    help="Largest tensor body (.npz) accepted per request.",
)
@click.option(
    "--max-concurrency",
    default=2,
    show_default=True,
    type=click.IntRange(1, 256),
    help="ONNX Runtime runs at once (worker threads).",
)
@click.option(
    "--threads",
    default=1,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Intra-op threads per ONNX Runtime session.",
)
@click.option(
    "--timeout-s",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Longest a request may take (body, queue and run).",
)
def serve(
    host, port, token, store, max_model_mb, max_body_mb, max_concurrency, threads, timeout_s
) -> None:
    """Serve ONNX sub-models over HTTP: upload, run on .npz tensors, profile."""
    from advisor.agent.server import AgentLimits
    from advisor.agent.server import serve as run_server
    from advisor.errors import AgentError

    if not token or not token.strip():
        raise AgentError(
            "refusing to start without a token: pass --token T or set EDGEDL_AGENT_TOKEN "
            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))')"
        )
    limits = AgentLimits(
        max_model_bytes=int(max_model_mb * MiB),
        max_body_bytes=int(max_body_mb * MiB),
        max_concurrency=max_concurrency,
        threads=threads,
        request_timeout_s=timeout_s,
    )
    banner = f"EdgeDL agent on http://{host}:{port}  (Ctrl-C to stop)"
    run_server(host, port, token, limits, store=store, ready_message=banner)


@agent.command("health")
@click.argument("url")
@click.option("--timeout-s", default=10.0, show_default=True, type=float)
@json_option
def health(url: str, timeout_s: float, as_json: bool) -> None:
    """Ask the agent at URL for its status, limits and environment fingerprint."""
    from advisor.agent.client import AgentClient

    with AgentClient(url, timeout=timeout_s) as client:
        report = client.health()
    if as_json:
        echo_json(report)
        return
    click.echo(f"status: {report.get('status')}")
    for key, value in (report.get("fingerprint") or {}).items():
        click.echo(f"  {key}: {value}")

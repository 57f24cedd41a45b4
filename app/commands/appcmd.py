"""`edgedl app`: start the Streamlit app on localhost."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click


def streamlit_command(host: str, port: int, *extra: str) -> list[str]:
    """The `streamlit run` command line for the app (also used by docs/make_screenshot.py)."""
    page = Path(__file__).resolve().parent.parent / "streamlit_app.py"
    return [
        sys.executable, "-m", "streamlit", "run", str(page),
        "--server.address", host, "--server.port", str(port),
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "minimal", *extra,
    ]  # fmt: skip


@click.command("app")
@click.option("--port", default=8501, show_default=True, help="Port to serve on.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
def app_command(port: int, host: str) -> None:
    """Start the web app (Streamlit) on localhost."""
    cmd = streamlit_command(host, port)
    click.echo(f"EdgeDL Advisor app on http://{host}:{port}  (Ctrl-C to stop)")
    sys.stdout.flush()
    # become the server rather than its parent: a signal sent to this PID (a supervisor's
    # SIGTERM, `kill PID`) then stops Streamlit itself instead of orphaning it
    os.execv(cmd[0], cmd)

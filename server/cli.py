"""`agechat server`: the relay's command (the launcher mounts it on the `agechat` group)."""

from __future__ import annotations

from pathlib import Path

import click

from server.config import RelayConfig
from server.run import RelayConfigError, run_relay


@click.command("server")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".data/relay"),
    show_default=True,
    help="Where the relay keeps its SQLite database.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
@click.option(
    "--policy",
    default="default",
    show_default=True,
    help="Policy preset (default|strict|open) or a PATH.toml.",
)
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--insecure",
    is_flag=True,
    help="Allow listening beyond loopback without TLS (visible-mode text then crosses "
    "the network in clear).",
)
def server_command(
    data_dir: Path,
    host: str,
    port: int,
    policy: str,
    tls_cert: Path | None,
    tls_key: Path | None,
    insecure: bool,
) -> None:
    """Run the relay."""
    config = RelayConfig(
        data_dir=data_dir,
        host=host,
        port=port,
        policy=policy,
        tls_cert=tls_cert,
        tls_key=tls_key,
        insecure=insecure,
    )
    try:
        run_relay(config)
    except RelayConfigError as exc:
        raise click.ClickException(str(exc)) from exc

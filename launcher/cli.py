"""The `agechat` entry point: the client's commands plus the relay's `server` command.

This is the one place (with tests and the demo) where both sides meet (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from client.cli import cli
from client.group_cli import group
from client.guardian_cli import guardian
from client.mod_cli import mod, moderate
from launcher.demo import demo_command
from server.admin.commands import admin_group
from server.cli import server_command

cli.add_command(server_command)
cli.add_command(admin_group)
cli.add_command(demo_command)
cli.add_command(mod)
cli.add_command(moderate)
cli.add_command(guardian)
cli.add_command(group)


def main() -> None:
    cli()

"""The `agechat` entry point: the client's commands plus the relay's `server` command.

This is the one place (with tests and the demo) where both sides meet (DESIGN.md "Layout").
"""

from __future__ import annotations

from client.cli import cli
from launcher.demo import demo_command
from server.admin.commands import admin_group
from server.cli import server_command

cli.add_command(server_command)
cli.add_command(admin_group)
cli.add_command(demo_command)


def main() -> None:
    cli()

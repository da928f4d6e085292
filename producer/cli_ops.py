"""Operators' commands (Flower, metrics, health), attached to ``fibosms`` by producer.cli."""

from __future__ import annotations

import click

#: the commands producer.cli adds to the ``fibosms`` group
COMMANDS: list[click.Command] = []

"""``python -m fibosms.cli``: the same as the ``fibosms`` command."""

from fibosms.cli.main import run

run()

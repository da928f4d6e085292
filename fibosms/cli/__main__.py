"""``python -m fibosms.cli``: the same as the ``fibosms`` command."""

from fibosms.cli.main import main

main(prog_name="fibosms")

"""The ``fibosms`` command line: ``main`` (in :mod:`fibosms.cli.main`) is the entry point."""

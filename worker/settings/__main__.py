"""``python -m worker.settings --markdown``: the README's settings table."""

from __future__ import annotations

import sys

from worker.settings.table import markdown


def main(argv: list[str]) -> int:
    if argv != ["--markdown"]:
        print("usage: python -m worker.settings --markdown", file=sys.stderr)
        return 2
    sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

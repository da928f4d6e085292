"""Static security checks, part of the test command.

bandit (configured under ``[tool.bandit]`` in pyproject.toml) over the product's code:
no finding of HIGH severity, and every file parsed. Medium and low findings are listed in
the run's figures for a person to judge.

Not here: pip-audit. It looks each installed version up in PyPI's JSON API, and the package
index this project's machines reach does not know them ("Dependency not found on PyPI and
could not be audited" for every one), so it can audit nothing here; run it where PyPI itself
is reachable: ``pip install pip-audit && pip-audit --skip-editable``.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest

from tests.fixtures.services import require
from tests.fixtures.stack import ROOT

pytestmark = pytest.mark.system

TARGETS = ["worker", "producer", "fibosms", "celeryconfig.py"]


@pytest.mark.timeout(180)
def test_bandit_finds_nothing_of_high_severity_in_the_product(figures: dict[str, Any]) -> None:
    require(importlib.util.find_spec("bandit") is not None,
            "bandit is not installed (pip install -e '.[dev]')")
    done = subprocess.run(
        [sys.executable, "-m", "bandit", "-c", "pyproject.toml", "-q", "-r", *TARGETS,
         "-f", "json"],
        cwd=ROOT, capture_output=True, text=True, timeout=170, check=False,
    )
    report = json.loads(done.stdout)
    assert report["errors"] == [], f"bandit could not check some files: {report['errors']}"
    results = report["results"]
    high = [
        f"{r['filename']}:{r['line_number']} {r['test_id']} {r['issue_text']}"
        for r in results if r["issue_severity"] == "HIGH"
    ]
    assert high == [], "bandit: high-severity findings in the product:\n" + "\n".join(high)
    assert report["metrics"]["_totals"]["loc"] > 1000, "bandit looked at almost nothing"
    figures.update(
        lines_checked=report["metrics"]["_totals"]["loc"],
        findings=dict(Counter(r["issue_severity"] for r in results)),
        medium=[f"{r['filename']}:{r['line_number']} {r['test_id']}"
                for r in results if r["issue_severity"] == "MEDIUM"],
    )

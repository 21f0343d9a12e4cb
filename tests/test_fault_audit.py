"""The issue-#13 fault audit (scripts/fault_audit.py) as a CI check: every bad input and
fault in its list ends with the expected exit status, one line, nothing left behind and
nothing deleted or changed that the run did not write."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import fault_audit  # noqa: E402


def test_the_audit_cases_cover_every_category_of_the_issue():
    cats = {c.category for c in fault_audit.cases()}
    assert {"overwrite", "writes", "signals", "run folders", "options", "image", "library", "names",
            "minor", "outputs", "exit codes", "processing"} <= cats
    assert len(fault_audit.cases()) >= 144


@pytest.mark.timeout(2700)  # 170 cases, each a CLI run in a child: ~13 min idle, ~25 min on a loaded 2-core VM
def test_every_fault_is_handled_cleanly():
    res = fault_audit.run()
    dirty = [f"[{r['category']}] {r['case']}: {'; '.join(r['problems'])} — {r['message']}"
             for r in res["cases"] if not r["clean"]]
    assert not dirty, "\n".join(dirty)

"""Map every real Salesforce describe in shared/realdata through the Salesforce reader and report.

Run: ``.venv/bin/python bench/check_realdata.py``. For each ``*.json`` in
``<repo>/../shared/realdata/salesforce`` it prints the object, the field count, a histogram of the
mapped types and the number of picklist fields. Exit status 1 if any file fails to map; the folder
lives outside the repository (licence), so when it is absent the check is skipped with exit 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from agentwatch.collector.formats.salesforce import snapshot_from_salesforce_describe
from agentwatch.core.errors import FormatError

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
SALESFORCE = REALDATA / "salesforce"


def check_file(path: Path) -> str | None:
    """Map one file and print its summary; return the problem, or None when it mapped."""
    try:
        payload = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return f"cannot read as JSON: {exc}"
    try:
        # A fixed time keeps the output reproducible; the describe carries none of its own.
        snap = snapshot_from_salesforce_describe(payload, taken_at=datetime(2026, 1, 1, tzinfo=UTC))
    except FormatError as exc:
        return str(exc)
    types = Counter(field.type for field in snap.fields)
    picklists = sum(field.picklist_values is not None for field in snap.fields)
    histogram = ", ".join(
        f"{name}={count}" for name, count in sorted(types.items(), key=lambda t: (-t[1], t[0]))
    )
    print(f"{path.name}")
    print(f"  object:          {snap.object}")
    print(f"  fields:          {len(snap.fields)}")
    print(f"  types:           {histogram}")
    print(f"  picklist fields: {picklists}")
    return None


def main() -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    if not SALESFORCE.is_dir():
        print(f"SKIP: {SALESFORCE} not found; real payloads are kept outside the repository.")
        return 0
    files = sorted(SALESFORCE.glob("*.json"))
    if not files:
        print(f"FAIL: no *.json files in {SALESFORCE}", file=sys.stderr)
        return 1
    failures = []
    for path in files:
        problem = check_file(path)
        if problem is not None:
            failures.append((path, problem))
            print(f"{path.name}\n  FAILED: {problem}")
    if failures:
        print(f"\nFAIL: {len(failures)} of {len(files)} files did not map:", file=sys.stderr)
        for path, problem in failures:
            print(f"  {path}: {problem}", file=sys.stderr)
        return 1
    print(f"\nOK: {len(files)} Salesforce describe files mapped cleanly.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Page load times of the dashboard on a big store: every page, first load (nothing cached) and a reload.

Run: ``.venv/bin/python bench/dashboard.py --home /tmp/speed10m/store-big`` (the 10-million-event store that
``bench/check_speed.py --dir /tmp/speed10m`` builds). Each page runs in a fresh process through Streamlit's
AppTest (the app's real script: DuckDB queries, Polars, Altair specs), so the first figure includes every query
uncached; the second is the same page run again in that process, what a viewer sees when moving between pages.
Target: under 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from agentwatch.app.dashboard_launch import NO_KEY_ENV

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["incidents", "agents", "schema", "routing", "outcomes", "pipeline", "audit"]

CHILD = """
import json, sys, time
from streamlit import config
from streamlit.testing.v1 import AppTest
config.set_option("server.address", "127.0.0.1")  # as `agentwatch dashboard --no-key` on loopback: no key page
page = sys.argv[1]
at = AppTest.from_file(sys.argv[2], default_timeout=600)
times = []
if page == "incidents":  # the default page: a browser's first request
    for _ in range(2):
        began = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - began)
else:
    at.run()  # the frame and the default page first, as a browser's first request
    for _ in range(2):
        began = time.perf_counter()
        at.switch_page(f"views/{page}.py").run()
        times.append(time.perf_counter() - began)
problems = [str(e.value) for e in at.exception]
if at.text_input and any(t.label == "API key" for t in at.text_input):
    problems.append("the key page showed, not the page")
print(json.dumps({"page": page, "first_s": times[0], "cached_s": times[1], "exceptions": problems}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="An agentwatch home with a big store.")
    parser.add_argument("--pages", nargs="*", default=PAGES)
    args = parser.parse_args()
    env = {**os.environ, "AGENTWATCH_HOME": str(args.home), NO_KEY_ENV: "1"}
    for page in args.pages:
        result = subprocess.run([sys.executable, "-c", CHILD, page, str(ROOT / "dashboards" / "app.py")],
                                env=env, capture_output=True, text=True, check=False)
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        if result.returncode or not lines:
            print(f"{page}: failed\n{result.stderr[-2000:]}")
            continue
        row = json.loads(lines[-1])
        flag = "" if row["first_s"] < 2 else "  (over the 2 s target)"
        print(f"{page:10s} first {row['first_s']:.2f} s, again {row['cached_s']:.2f} s{flag}"
              + (f"  exceptions: {row['exceptions']}" if row["exceptions"] else ""))


if __name__ == "__main__":
    main()

"""Writes every ops file generated from code, with the thresholds of platform_assets/core/slo.py:

* grafana/dashboards/credit_risk_service.json (grafana/dashboards.py),
* grafana/prometheus/rules.yml (grafana/prometheus_rules.py),
* k8s/base/analysis-template.yaml (grafana/canary_analysis.py).

    python grafana/generate.py            # (re)writes the three files
    python grafana/generate.py --check    # exit 1, naming each stale file, if a committed file differs

Each output is deterministic, so it is committed; tests/ops regenerates and diffs them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import canary_analysis
import dashboards
import prometheus_rules

REPO = Path(__file__).resolve().parents[1]

#: (output file, function that renders its exact text).
GENERATED: tuple[tuple[Path, Callable[[], str]], ...] = (
    (dashboards.OUTPUT, dashboards.render),
    (prometheus_rules.OUTPUT, prometheus_rules.render),
    (canary_analysis.OUTPUT, canary_analysis.render),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file differs from what would be written")
    args = parser.parse_args(argv)
    stale = []
    for output, render in GENERATED:
        text = render()
        name = output.relative_to(REPO)
        if args.check:
            if not output.exists() or output.read_text(encoding="utf-8") != text:
                stale.append(name)
            continue
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
        print(f"wrote {name}")
    for name in stale:
        print(f"{name} is stale: run `python grafana/generate.py`", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())

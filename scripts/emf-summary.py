#!/usr/bin/env python3
"""Sums up CloudWatch Embedded Metric Format lines: what CloudWatch would
have made of them. Reads log lines (a file, or stdin); lines that are not
EMF documents are skipped. scripts/demo.sh runs it on the lines the
handler and the check wrote.

For each metric (per dimension values other than Pool, such as the check's
Reason): its unit, how many values, their sum; for distributions
(ExposureWindow, CheckLatency) also p50, p99 and max, the statistics the
dashboard and the alarm use.
"""
import json
import math
import sys

DISTRIBUTIONS = {"ExposureWindow", "CheckLatency"}


def percentile(values, q):
    # Nearest rank, as `mturk-exclusion status` computes it.
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def main():
    source = open(sys.argv[1]) if len(sys.argv) > 1 else sys.stdin
    metrics = {}  # (name, extra dimensions) -> {"unit", "values"}
    documents = 0
    pools = set()
    for line in source:
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if not isinstance(doc, dict) or "_aws" not in doc:
            continue
        documents += 1
        for directive in doc["_aws"].get("CloudWatchMetrics", []):
            dims = [d for dset in directive.get("Dimensions", []) for d in dset]
            extra = tuple(f"{d}={doc.get(d)}" for d in dims if d != "Pool")
            if "Pool" in dims:
                pools.add(doc.get("Pool"))
            for m in directive.get("Metrics", []):
                name = m["Name"]
                value = doc.get(name)
                values = value if isinstance(value, list) else [value]
                entry = metrics.setdefault(
                    (name, extra), {"unit": m.get("Unit", "None"), "values": []}
                )
                entry["values"].extend(v for v in values if isinstance(v, (int, float)))
    if not documents:
        print("No metrics were written.")
        return
    print(
        f"Metrics the functions would have sent to CloudWatch ({documents} EMF lines, "
        f"namespace MturkExclusion, Pool={', '.join(sorted(map(str, pools)))}):"
    )
    print(f"  {'metric':<34} {'unit':<13} {'values':>6} {'sum':>9}   distribution")
    for (name, extra), entry in sorted(metrics.items()):
        values = entry["values"]
        label = name + (f" [{', '.join(extra)}]" if extra else "")
        total = sum(values)
        shown_sum = f"{total:.0f}" if entry["unit"] == "Count" else "-"
        line = f"  {label:<34} {entry['unit']:<13} {len(values):>6} {shown_sum:>9}"
        if name in DISTRIBUTIONS and values:
            line += (
                f"   p50 {percentile(values, 0.5):.3f}, p99 {percentile(values, 0.99):.3f},"
                f" max {max(values):.3f}"
            )
        elif name == "MturkRate" and values:
            line += f"   last {values[-1]:g}/s"
        print(line)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Draw docs/benchmarks.png from the CSV written by `cargo bench --bench compare`.

usage: python3 benches/chart.py RESULTS.csv OUTPUT.png [SUBTITLE]

Four panels, one bar per target, medians with min-max error bars:
bulk throughput (MB/s), request/response rate (req/s), request/response
latency at 50 connections (us), and resident memory with idle sessions (MiB,
log scale). Needs matplotlib (`pip install matplotlib`).
"""

import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TARGETS = ["direct", "tcpbridge", "tokio-ct", "tokio-mt", "thread",
           "haproxy", "nginx", "socat", "rinetd"]

PANELS = [
    ("Bulk throughput (MB/s, higher is better)", False, [
        ("bulk-up-1", "MB/s", "1 stream up"),
        ("bulk-down-1", "MB/s", "1 stream down"),
        ("bulk-up-8", "MB/s", "8 streams up"),
        ("bulk-down-8", "MB/s", "8 streams down"),
    ]),
    ("Request/response, 1 B (req/s, higher is better)", False, [
        ("rr-1B-c1", "req/s", "1 conn"),
        ("rr-1B-c50", "req/s", "50 conns"),
        ("rr-1B-c400", "req/s", "400 conns"),
        ("churn", "conn/s", "churn (conn/s)"),
    ]),
    ("Latency, 1 B echo, 50 connections (us, lower is better)", False, [
        ("rr-1B-c50", "p50 us", "p50"),
        ("rr-1B-c50", "p99 us", "p99"),
        ("rr-1B-c50", "p99.9 us", "p99.9"),
    ]),
    ("Proxy RSS, idle sessions (MiB, log; socat summed over its forks)", True, [
        ("idle-1000", "RSS MiB", "1,000 idle"),
        ("idle-5000", "RSS MiB", "5,000 idle"),
    ]),
]


def load(path):
    figures = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            if not row["median"]:
                continue
            key = (row["workload"], row["target"], row["metric"])
            figures[key] = tuple(float(row[c]) for c in ("median", "min", "max"))
    return figures


def draw(axis, figures, title, log_scale, series):
    targets = [t for t in TARGETS
               if any((w, t, m) in figures for w, m, _ in series)]
    width = 0.8 / len(series)
    for index, (workload, metric, label) in enumerate(series):
        xs, heights, low, high = [], [], [], []
        for position, target in enumerate(targets):
            value = figures.get((workload, target, metric))
            if value is None:
                continue
            median, least, most = value
            xs.append(position + (index - (len(series) - 1) / 2) * width)
            heights.append(median)
            low.append(median - least)
            high.append(most - median)
        axis.bar(xs, heights, width, yerr=[low, high], capsize=2, label=label)
    axis.set_xticks(range(len(targets)))
    axis.set_xticklabels(targets, rotation=30, ha="right")
    axis.set_title(title, fontsize=10)
    if log_scale:
        axis.set_yscale("log")
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=8)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    figures = load(sys.argv[1])
    fig, axes = plt.subplots(2, 2, figsize=(14, 9))
    for axis, (title, log_scale, series) in zip(axes.flat, PANELS):
        draw(axis, figures, title, log_scale, series)
    heading = "tcpbridge vs baselines: medians, error bars min-max"
    if len(sys.argv) > 3:
        heading += "\n" + sys.argv[3]
    fig.suptitle(heading)
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=100)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Draw docs/soak.png from the samples written by `cargo bench --bench soak`.

usage: python3 benches/soak/plot.py SAMPLES.csv OUTPUT.png [SUBTITLE]

Two panels over time, one sample per second: the proxy's resident memory
(MiB) with its live sessions, and its open file descriptors, with the
session rate on a second axis. Needs matplotlib (`pip install matplotlib`).
"""

import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(path):
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {key: [float(row[key]) for row in rows] for key in rows[0]}


def rates(seconds, done):
    out = [0.0]
    for i in range(1, len(done)):
        span = seconds[i] - seconds[i - 1]
        out.append((done[i] - done[i - 1]) / span if span > 0 else 0.0)
    return out


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    data = load(sys.argv[1])
    minutes = [s / 60 for s in data["seconds"]]
    rss = [k / 1024 for k in data["rss_kib"]]

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
    title = "tcpbridge under a connection-churn soak"
    if len(sys.argv) == 4:
        title += "\n" + sys.argv[3]
    figure.suptitle(title, fontsize=12)

    top.plot(minutes, rss, color="tab:blue", linewidth=1.2, label="RSS (MiB)")
    top.set_ylabel("RSS (MiB)", color="tab:blue")
    top.set_ylim(0, max(rss) * 1.5)
    top.grid(axis="y", alpha=0.3)
    live = top.twinx()
    live.plot(minutes, data["live_sessions"], color="tab:gray", linewidth=0.6,
              alpha=0.7, label="live sessions")
    live.set_ylabel("live sessions", color="tab:gray")
    live.set_ylim(0, max(data["live_sessions"]) * 1.5 + 1)

    bottom.plot(minutes, data["fds"], color="tab:red", linewidth=1.0,
                label="open fds")
    bottom.set_ylabel("open file descriptors", color="tab:red")
    bottom.set_ylim(0, max(data["fds"]) * 1.3)
    bottom.set_xlabel("minutes")
    bottom.grid(axis="y", alpha=0.3)
    rate = bottom.twinx()
    rate.plot(minutes, rates(data["seconds"], data["sessions_done"]),
              color="tab:green", linewidth=0.6, alpha=0.7)
    rate.set_ylabel("sessions/s", color="tab:green")
    rate.set_ylim(0, max(rates(data["seconds"], data["sessions_done"])) * 1.3 + 1)

    figure.tight_layout()
    figure.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()

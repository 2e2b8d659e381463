#!/usr/bin/env bash
# Cross-check of the harness's figures with tools nobody here wrote, through
# the same targets: iperf3 (1 stream each way, against `iperf3 -s`) and wrk
# (2 threads, 50 connections, --latency, against an nginx HTTP server).
#
#   benches/crosscheck.sh [--quick] [--runs N] [--only a,b,...] [--out DIR]
#
# Needs iperf3, wrk and nginx (apt-get install -y iperf3 wrk nginx-core);
# a missing tool is reported and skipped. Writes crosscheck.md and
# crosscheck.csv to DIR (default <target>/bench-compare/). The work is done by
# the compare bench (benches/compare/crosscheck.rs), which starts the proxies
# exactly as the harness does.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench compare -- --crosscheck-only "$@"

#!/usr/bin/env bash
# Run every benchmark in bench/ (release build) and keep the output as markdown.
# Usage: bench/run.sh [OUT.md]   (default target/bench-latest.md)
# Needs models/ (scripts/fetch-models.sh) and ../shared/data/cmrc2018_trial.json
# (or ZHIKU_BENCH_QA); a benchmark without its inputs prints "skipped".
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/bench-latest.md}"
mkdir -p "$(dirname "$out")"
: >"$out"
for bench in retrieval ingest scale corpus; do
  echo "== $bench" >&2
  cargo bench --bench "$bench" | tee -a "$out"
  echo >>"$out"
done
echo "figures written to $out" >&2

#!/usr/bin/env bash
# Benchmark (not a test) of the engine at scale, in-process (no HTTP, no emulator): see
# benches/engine.rs for each mode. Prints `name value unit` lines:
#   apply and rollback of N_APPLY steps against a no-op runner (CPU per step, peak RSS),
#   resume and status of a journal of N_JOURNAL steps, half done (seconds),
#   plan and verify of a generated inventory report of N_VERIFY objects (seconds, peak RSS).
# Usage: scripts/bench-engine.sh [N_APPLY] [N_JOURNAL] [N_VERIFY]
#        (default 1000000 10000000 1000000; the 10^7 journal takes about 6 GB of /var/tmp)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
n_apply="${1:-1000000}"
n_journal="${2:-10000000}"
n_verify="${3:-1000000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
work="$(mktemp -d /var/tmp/rekey-bench-engine.XXXXXX)"
trap 'rm -rf "$work"' EXIT
cargo bench --quiet --bench engine --no-run
bench() { cargo bench --quiet --bench engine -- "$@"; }
mkdir -p "$work/apply" "$work/journal" "$work/verify"
bench apply "$n_apply" "$work/apply"
bench rollback "$work/apply"
rm -rf "$work/apply"
bench journal "$n_journal" "$work/journal"
for i in 1 2 3; do bench resume "$work/journal"; done
for i in 1 2 3; do bench status "$work/journal"; done
rm -rf "$work/journal"
manifest="$(python3 scripts/gen_inventory.py "$n_verify" "$work/verify/report" ml-bench)"
cat > "$work/verify/campaign.yaml" <<YAML
version: 1
campaign: bench
aws:
  region: us-east-1
  s3:
    buckets: ["ml-bench"]
    versions: all
    inventory: { source: report, manifests: { ml-bench: "file://$manifest" } }
keys: { bench: { aws: alias/ml-bench } }
mapping: [ { match: { bucket: "ml-*" }, key: bench } ]
YAML
bench verify "$work/verify"

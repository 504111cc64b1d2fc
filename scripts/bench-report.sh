#!/usr/bin/env bash
# Benchmark (not a test): plan one bucket of N objects from a synthetic S3 Inventory report on
# local disk (scripts/gen_inventory.py; no object is HEADed, so the emulator serves only the
# bucket-level reads) and print objects/s, the rekey process's CPU and its peak memory (max
# RSS). Usage: scripts/bench-report.sh [N ...]   (default: 1000000)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
[ "$#" -gt 0 ] || set -- 1000000
state="$(mktemp -d /var/tmp/rekey-bench.XXXXXX)"
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-$root/target}/release/rekey"
endpoint="$(scripts/start-moto.sh "$state")"
trap 'kill "$(cat "$state/moto.pid")" 2>/dev/null || true; rm -rf "$state"' EXIT
.venv/bin/python - "$endpoint" <<'PY'
import sys, boto3
from botocore.config import Config
endpoint = sys.argv[1]
kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
          aws_secret_access_key="testing")
s3 = boto3.client("s3", config=Config(s3={"addressing_style": "path"}), **kw)
kms = boto3.client("kms", **kw)
k = kms.create_key()["KeyMetadata"]["KeyId"]
kms.create_alias(AliasName="alias/ml-bench", TargetKeyId=k)
s3.create_bucket(Bucket="ml-bench")
s3.put_bucket_versioning(Bucket="ml-bench", VersioningConfiguration={"Status": "Enabled"})
PY
export AWS_ENDPOINT_URL="$endpoint" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
for n in "$@"; do
  rm -rf "$state/report" "$state/plans"
  t0=$(date +%s)
  manifest="$(.venv/bin/python scripts/gen_inventory.py "$n" "$state/report" ml-bench)"
  echo "generated a report of $n rows in $(( $(date +%s) - t0 )) s ($(du -sh "$state/report" | cut -f1) gzip CSV)"
  cat > "$state/bench.yaml" <<YAML
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
  .venv/bin/python - "$bin" "$state/bench.yaml" "$n" "$state/plans/bench.plan.yaml" <<'PY'
import resource, subprocess, sys, time
binary, campaign, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
t0 = time.monotonic()
subprocess.run([binary, "plan", "-c", campaign, "-o", out], check=True,
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
wall = time.monotonic() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = ru.ru_utime + ru.ru_stime
print(f"plan of {n} report rows: wall {wall:.1f} s, {n / wall:,.0f} rows/s; "
      f"CPU {cpu:.1f} s ({cpu * 1e6 / n:.2f} us per row); "
      f"peak memory (max RSS) {ru.ru_maxrss / 1024:.1f} MiB")
PY
done

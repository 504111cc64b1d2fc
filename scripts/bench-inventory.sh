#!/usr/bin/env bash
# Benchmark (not a test): inventory N objects (default 2,000 × 1 KiB) on the emulator and print
# objects/s, peak memory (max RSS) and the client's CPU milliseconds per object (user+sys of
# the rekey process). Usage: scripts/bench-inventory.sh [N] [CONCURRENCY]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
n="${1:-2000}"
conc="${2:-32}"
state="$(mktemp -d)"
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-$root/target}/release/rekey"
endpoint="$(scripts/start-moto.sh "$state")"
trap 'kill "$(cat "$state/moto.pid")" 2>/dev/null || true; rm -rf "$state"' EXIT
.venv/bin/python - "$endpoint" "$n" <<'PY'
import sys, boto3
from concurrent.futures import ThreadPoolExecutor
from botocore.config import Config
endpoint, n = sys.argv[1], int(sys.argv[2])
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing",
                  config=Config(s3={"addressing_style": "path"}, max_pool_connections=16))
kms = boto3.client("kms", endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
k = kms.create_key()["KeyMetadata"]["KeyId"]
kms.create_alias(AliasName="alias/ml-bench", TargetKeyId=k)
s3.create_bucket(Bucket="ml-bench")
body = b"x" * 1024
with ThreadPoolExecutor(16) as ex:
    list(ex.map(lambda i: s3.put_object(Bucket="ml-bench", Key=f"shards/{i:06d}.bin", Body=body,
                                        ServerSideEncryption="AES256"), range(n)))
PY
cat > "$state/bench.yaml" <<YAML
version: 1
campaign: bench
aws: { region: us-east-1, s3: { buckets: ["ml-bench"] } }
keys: { bench: { aws: alias/ml-bench } }
mapping: [ { match: { bucket: "ml-*" }, key: bench } ]
limits: { concurrency: $conc }
YAML
export AWS_ENDPOINT_URL="$endpoint" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
.venv/bin/python - "$bin" "$state/bench.yaml" "$n" "$conc" <<'PY'
import resource, subprocess, sys, time
binary, campaign, n, conc = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
t0 = time.monotonic()
subprocess.run([binary, "inventory", "-c", campaign, "-o", "/dev/null"], check=True,
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
wall = time.monotonic() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu_ms = (ru.ru_utime + ru.ru_stime) * 1000
print(f"inventory of {n} objects at concurrency {conc}:")
print(f"  wall {wall:.2f} s, {n / wall:.0f} objects/s (bounded by the emulator)")
print(f"  rekey CPU {cpu_ms:.0f} ms, {cpu_ms / n:.3f} ms per object")
print(f"  peak memory (max RSS) {ru.ru_maxrss / 1024:.1f} MiB")
PY

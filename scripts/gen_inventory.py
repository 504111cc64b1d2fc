"""Write a synthetic S3 Inventory report of N objects to a directory, without any server, for
benchmarks (scripts/bench-report.sh): manifest.json, manifest.checksum and gzip CSV data files
in AWS's layout, with a realistic mix of encryption classes, storage classes, versions and
delete markers, long and non-ASCII keys.

Usage: gen_inventory.py N OUT_DIR BUCKET [--rows-per-file R] [--seed S]

The report lists every version (IncludedObjectVersions All). No object is SSE-KMS or
DSSE-KMS (those take a HEAD each, which needs a server); the mix is NOT-SSE, SSE-S3 and SSE-C.
Prints the manifest's path.
"""

import argparse
import csv
import gzip
import hashlib
import io
import json
import os
import random
import time
from urllib.parse import quote_plus

FIELDS = ["Bucket", "Key", "VersionId", "IsLatest", "IsDeleteMarker", "Size",
          "LastModifiedDate", "ETag", "StorageClass", "EncryptionStatus", "BucketKeyStatus",
          "ObjectLockRetainUntilDate", "ObjectLockMode", "ObjectLockLegalHoldStatus",
          "IntelligentTieringAccessTier", "ChecksumAlgorithm"]
WORDS = ["models", "features", "shards", "train", "eval", "checkpoints", "données", "模型",
         "run 2024", "a+b", "résumé", "tokenizer", "embeddings"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int)
    ap.add_argument("out")
    ap.add_argument("bucket")
    ap.add_argument("--rows-per-file", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    base = f"inv/{a.bucket}/rekey"
    data_dir = os.path.join(a.out, base, "data")
    stamp = "2026-11-26T00-00Z"
    man_dir = os.path.join(a.out, base, stamp)
    os.makedirs(data_dir, exist_ok=True)
    os.makedirs(man_dir, exist_ok=True)
    files = []
    written = 0
    key_no = 0
    while written < a.n:
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=1) as gz:
            text = io.TextIOWrapper(gz, encoding="utf-8", newline="")
            w = csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\n")
            rows = 0
            while rows < a.rows_per_file and written < a.n:
                key_no += 1
                depth = rnd.randint(1, 6)
                parts = [rnd.choice(WORDS) for _ in range(depth)]
                name = "/".join(parts) + f"/part-{key_no:09d}" + ("-x" * rnd.randint(0, 40))
                versions = 1 if rnd.random() < 0.8 else rnd.randint(2, 3)
                marker = rnd.random() < 0.02
                for v in range(versions):
                    latest = v == versions - 1 and not marker
                    r = rnd.random()
                    enc = "SSE-S3" if r < 0.7 else "NOT-SSE" if r < 0.97 else "SSE-C"
                    cls = rnd.choice(["STANDARD"] * 8 + ["STANDARD_IA", "INTELLIGENT_TIERING",
                                                         "GLACIER_IR"])
                    w.writerow([a.bucket, quote_plus(name, safe="/"), f"v{key_no}.{v}",
                                "true" if latest else "false", "false",
                                str(rnd.randint(1, 1 << 30)), "2026-11-01T10:00:00.000Z",
                                hashlib.md5(f"{key_no}.{v}".encode()).hexdigest(), cls, enc,
                                "DISABLED", "", "", "OFF",
                                "FREQUENT" if cls == "INTELLIGENT_TIERING" else "", ""])
                    rows += 1
                    written += 1
                if marker:
                    w.writerow([a.bucket, quote_plus(name, safe="/"), f"v{key_no}.m", "true",
                                "true", "", "2026-11-02T10:00:00.000Z", "", "", "", "", "",
                                "", "", "", ""])
                    rows += 1
            text.flush()
            text.detach()
        data = buf.getvalue()
        key = f"{base}/data/{len(files):05d}.csv.gz"
        with open(os.path.join(a.out, key), "wb") as f:
            f.write(data)
        files.append({"key": key, "size": len(data), "MD5checksum": hashlib.md5(data).hexdigest()})
    manifest = json.dumps({
        "sourceBucket": a.bucket, "destinationBucket": "arn:aws:s3:::local",
        "version": "2016-11-30", "creationTimestamp": str(int(time.time() * 1000)),
        "fileFormat": "CSV", "fileSchema": ", ".join(FIELDS), "files": files}).encode()
    path = os.path.join(man_dir, "manifest.json")
    with open(path, "wb") as f:
        f.write(manifest)
    with open(os.path.join(man_dir, "manifest.checksum"), "w") as f:
        f.write(hashlib.md5(manifest).hexdigest())
    print(path)


if __name__ == "__main__":
    main()

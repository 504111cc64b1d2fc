"""Give buckets an S3 Inventory configuration and deliver a report of each (the overlay's
test-only trigger, scripts/moto_overlay.py behaviour 19), for tests/integration/reports.rs.

Usage: seed_inventory.py ENDPOINT DEST BUCKET... [--current] [--without FIELD] [--at STAMP]
       [--rows-per-file N] [--deliver-only]

Every BUCKET gets configuration `rekey` (CSV into s3://DEST/inv, every version unless
--current, the fields rekey needs except --without), then a report delivered at STAMP
(default 2026-11-26T00-00Z). --deliver-only only delivers a new report. Prints
{BUCKET: manifest URL}.
"""

import argparse
import json
import urllib.request

import boto3
from botocore.config import Config

FIELDS = ["Size", "LastModifiedDate", "ETag", "StorageClass", "EncryptionStatus",
          "BucketKeyStatus", "ObjectLockRetainUntilDate", "ObjectLockMode",
          "ObjectLockLegalHoldStatus", "IntelligentTieringAccessTier", "ChecksumAlgorithm"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("endpoint")
    ap.add_argument("dest")
    ap.add_argument("buckets", nargs="+")
    ap.add_argument("--current", action="store_true")
    ap.add_argument("--without", action="append", default=[])
    ap.add_argument("--at", default="2026-11-26T00-00Z")
    ap.add_argument("--rows-per-file", type=int, default=1000)
    ap.add_argument("--deliver-only", action="store_true")
    a = ap.parse_args()
    s3 = boto3.client("s3", endpoint_url=a.endpoint, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing",
                      config=Config(s3={"addressing_style": "path"}))
    if not a.deliver_only:
        if a.dest not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
            s3.create_bucket(Bucket=a.dest)
    out = {}
    for bucket in a.buckets:
        if not a.deliver_only:
            s3.put_bucket_inventory_configuration(
                Bucket=bucket, Id="rekey", InventoryConfiguration={
                    "Id": "rekey", "IsEnabled": True,
                    "IncludedObjectVersions": "Current" if a.current else "All",
                    "Schedule": {"Frequency": "Daily"},
                    "Destination": {"S3BucketDestination": {
                        "Bucket": f"arn:aws:s3:::{a.dest}", "Format": "CSV", "Prefix": "inv"}},
                    "OptionalFields": [f for f in FIELDS if f not in a.without]})
        req = urllib.request.Request(
            f"{a.endpoint}/_rekey/inventory", method="POST",
            data=json.dumps({"bucket": bucket, "id": "rekey", "at": a.at,
                             "rows_per_file": a.rows_per_file}).encode())
        out[bucket] = json.loads(urllib.request.urlopen(req).read())["manifest"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()

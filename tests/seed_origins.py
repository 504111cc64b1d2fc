"""Seed access points and CloudFront origins around the demo estate (scripts/seed_estate.py,
same prefix) for tests/integration/consumers.rs and the overlay's own test.

Usage: seed_origins.py ENDPOINT PREFIX [fix | bare BUCKET]

- ml-vision-data: its bucket policy delegates access control to the account's access points
  (Principal "*" under s3:DataAccessPointAccount); access point <p>analytics lets a role of
  another account (ap_reader) read, which the vision key policy does not name; CloudFront
  distribution `website` reads its website endpoint (public-origin).
- ml-vision-data also sits behind Multi-Region Access Point <p>global, whose policy lets
  mrap_reader (another account) read.
- ml-vision-locked: CloudFront distribution `oac` reads it through an origin access control;
  the bucket policy lets that distribution in; the vision key policy does not. Distribution
  `never` reads it through an origin access control that never signs (public-origin).
- ml-fraud-sandbox: CloudFront distribution `oai` reads it through the alias of its access
  point <p>cdn, with an origin access identity (oai-origin).
With `fix`, the vision key policy names ap_reader and mrap_reader and lets distribution `oac`
decrypt, and
distribution `oai` moves to an origin access control that the fraud key policy lets decrypt.
With `bare BUCKET`, only create BUCKET (unless it exists), one distribution with an OAC origin
and an OAI origin on it, and access point <p>bare with a policy.
Prints {"ap_reader": ARN, "oac": ARN, "oai": ARN, "website": ARN} (bare: {"distribution": ARN,
"access_point": NAME}).
"""

import json
import re
import sys

import boto3
from botocore.config import Config

ACCOUNT = "123456789012"
AP_READER = "arn:aws:iam::210987654321:role/ap-reader"
MRAP_READER = "arn:aws:iam::210987654321:role/mrap-reader"


def clients(endpoint):
    kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
              aws_secret_access_key="testing")
    s3 = boto3.client("s3", config=Config(s3={"addressing_style": "path"}), **kw)
    control = boto3.client("s3control", **kw)

    # S3 Control addresses {account}.{host}, which cannot resolve on a loopback address.
    def unprefix(request, **_):
        request.url = re.sub(r"://\d{12}\.", "://", request.url)

    control.meta.events.register("before-sign.s3-control", unprefix)
    return s3, control, boto3.client("cloudfront", **kw), boto3.client("kms", **kw)


def mrap_control(endpoint):
    """S3 Control for Multi-Region Access Points, whose control plane is in us-west-2."""
    c = boto3.client("s3control", endpoint_url=endpoint, region_name="us-west-2",
                     aws_access_key_id="testing", aws_secret_access_key="testing")
    c.meta.events.register("before-sign.s3-control",
                           lambda request, **_: setattr(
                               request, "url", re.sub(r"://\d{12}\.", "://", request.url)))
    return c


def s3_origin(oid, domain, oac=None, oai=""):
    o = {"Id": oid, "DomainName": domain, "S3OriginConfig": {"OriginAccessIdentity": oai}}
    if oac:
        o["OriginAccessControlId"] = oac
    return o


def distribution(cf, ref, origins):
    config = {
        "CallerReference": ref, "Comment": ref, "Enabled": True,
        "Origins": {"Quantity": len(origins), "Items": origins},
        "DefaultCacheBehavior": {
            "TargetOriginId": origins[0]["Id"], "ViewerProtocolPolicy": "allow-all", "MinTTL": 0,
            "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
            "TrustedSigners": {"Enabled": False, "Quantity": 0}}}
    return cf.create_distribution(DistributionConfig=config)["Distribution"]


def control_id(cf, name, behaviour="always"):
    return cf.create_origin_access_control(OriginAccessControlConfig={
        "Name": name, "SigningProtocol": "sigv4", "SigningBehavior": behaviour,
        "OriginAccessControlOriginType": "s3"})["OriginAccessControl"]["Id"]


def domain(bucket):
    return f"{bucket}.s3.us-east-1.amazonaws.com"


def bare(endpoint, p, bucket):
    s3, control, cf, _ = clients(endpoint)
    if bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=bucket)
    d = distribution(cf, f"{p}bare", [
        s3_origin("signed", domain(bucket), oac=control_id(cf, f"{p}bare")),
        s3_origin("identity", domain(bucket), oai="origin-access-identity/cloudfront/E2QWRUHEXAMPLE")])
    control.create_access_point(AccountId=ACCOUNT, Name=f"{p}bare", Bucket=bucket)
    control.put_access_point_policy(AccountId=ACCOUNT, Name=f"{p}bare", Policy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Sid": "ApReader", "Effect": "Allow", "Principal": {"AWS": AP_READER},
                       "Action": "s3:GetObject",
                       "Resource": f"arn:aws:s3:us-east-1:{ACCOUNT}:accesspoint/{p}bare/object/*"}]}))
    print(json.dumps({"distribution": d["ARN"], "access_point": f"{p}bare"}))


def main(endpoint, p, mode=""):
    s3, control, cf, kms = clients(endpoint)
    fix = mode == "fix"
    data, locked = f"{p}ml-vision-data", f"{p}ml-vision-locked"
    sandbox = f"{p}ml-fraud-sandbox"
    vision = kms.describe_key(KeyId=f"alias/{p}ml-vision")["KeyMetadata"]["Arn"]
    if not fix:
        # Access points, and the bucket policy delegating to them.
        control.create_access_point(AccountId=ACCOUNT, Name=f"{p}analytics", Bucket=data)
        control.put_access_point_policy(AccountId=ACCOUNT, Name=f"{p}analytics", Policy=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Sid": "ApReader", "Effect": "Allow", "Principal": {"AWS": AP_READER},
                           "Action": "s3:GetObject",
                           "Resource": f"arn:aws:s3:us-east-1:{ACCOUNT}:accesspoint/{p}analytics/object/*"}]}))
        s3.put_bucket_policy(Bucket=data, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
            "Sid": "DelegateToAccessPoints", "Effect": "Allow", "Principal": {"AWS": "*"},
            "Action": "*", "Resource": [f"arn:aws:s3:::{data}", f"arn:aws:s3:::{data}/*"],
            "Condition": {"StringEquals": {"s3:DataAccessPointAccount": ACCOUNT}}}]}))
        cdn = control.create_access_point(AccountId=ACCOUNT, Name=f"{p}cdn", Bucket=sandbox)
        alias = cdn["Alias"]
        oac = distribution(cf, f"{p}oac", [s3_origin("vision", domain(locked),
                                                     oac=control_id(cf, f"{p}vision"))])
        oai = distribution(cf, f"{p}oai", [s3_origin(
            "sandbox", domain(alias), oai="origin-access-identity/cloudfront/E2QWRUHEXAMPLE")])
        website = distribution(cf, f"{p}website", [{
            "Id": "site", "DomainName": f"{data}.s3-website-us-east-1.amazonaws.com",
            "CustomOriginConfig": {"HTTPPort": 80, "HTTPSPort": 443,
                                   "OriginProtocolPolicy": "http-only"}}])
        # A Multi-Region Access Point onto the data bucket, with a reader of another account.
        mr = mrap_control(endpoint)
        mr.create_multi_region_access_point(AccountId=ACCOUNT, ClientToken=f"{p}global", Details={
            "Name": f"{p}global", "Regions": [{"Bucket": data}]})
        mr.put_multi_region_access_point_policy(AccountId=ACCOUNT, ClientToken=f"{p}gp", Details={
            "Name": f"{p}global", "Policy": json.dumps({"Version": "2012-10-17", "Statement": [{
                "Sid": "MrapReader", "Effect": "Allow", "Principal": {"AWS": MRAP_READER},
                "Action": "s3:GetObject", "Resource": f"arn:aws:s3::{ACCOUNT}:accesspoint/*/object/*"}]})})
        # An origin access control that never signs: the locked bucket is read anonymously.
        never = distribution(cf, f"{p}never", [s3_origin(
            "unsigned", domain(locked), oac=control_id(cf, f"{p}never", "never"))])
        s3.put_bucket_policy(Bucket=locked, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
            "Sid": "CloudFrontOAC", "Effect": "Allow",
            "Principal": {"Service": "cloudfront.amazonaws.com"}, "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{locked}/*",
            "Condition": {"StringEquals": {"AWS:SourceArn": oac["ARN"]}}}]}))
        arns = {"oac": oac["ARN"], "oai": oai["ARN"], "website": website["ARN"],
                "never": never["ARN"]}
    else:
        arns = {}
        for d in cf.list_distributions()["DistributionList"].get("Items", []):
            for kind in ("oac", "oai", "website", "never"):
                if d["Comment"] == f"{p}{kind}":
                    arns[kind] = d["ARN"]
        # The OAI distribution moves to an origin access control.
        did = arns["oai"].rsplit("/", 1)[1]
        got = cf.get_distribution_config(Id=did)
        config = got["DistributionConfig"]
        for o in config["Origins"]["Items"]:
            o["S3OriginConfig"] = {"OriginAccessIdentity": ""}
            o["OriginAccessControlId"] = control_id(cf, f"{p}sandbox")
        cf.update_distribution(Id=did, IfMatch=got["ETag"], DistributionConfig=config)
        fraud = kms.describe_key(KeyId=f"alias/{p}ml-fraud")["KeyMetadata"]["Arn"]
        kms.put_key_policy(KeyId=fraud, PolicyName="default", Policy=json.dumps({
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                 "Action": "kms:*", "Resource": "*"},
                {"Sid": "AllowCloudFrontOAC", "Effect": "Allow",
                 "Principal": {"Service": "cloudfront.amazonaws.com"}, "Action": "kms:Decrypt",
                 "Resource": "*", "Condition": {"StringEquals": {"aws:SourceArn": arns["oai"]}}}]}))
        kms.put_key_policy(KeyId=vision, PolicyName="default", Policy=json.dumps({
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                 "Action": "kms:*", "Resource": "*"},
                {"Sid": "ApReader", "Effect": "Allow", "Principal": {"AWS": [AP_READER, MRAP_READER]},
                 "Action": "kms:Decrypt", "Resource": "*"},
                {"Sid": "AllowCloudFrontOAC", "Effect": "Allow",
                 "Principal": {"Service": "cloudfront.amazonaws.com"}, "Action": "kms:Decrypt",
                 "Resource": "*", "Condition": {"StringEquals": {"aws:SourceArn": arns["oac"]}}}]}))
    print(json.dumps({"ap_reader": AP_READER, "mrap_reader": MRAP_READER, **arns}))


if __name__ == "__main__":
    if len(sys.argv) > 4 and sys.argv[3] == "bare":
        bare(sys.argv[1], sys.argv[2], sys.argv[4])
    else:
        main(*sys.argv[1:])

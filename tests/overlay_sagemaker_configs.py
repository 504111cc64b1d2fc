"""Checks the overlay's SageMaker endpoint-config behaviours against an emulator endpoint.

Usage: overlay_sagemaker_configs.py ENDPOINT CHECK, CHECK one of
- whole: DescribeEndpointConfig echoes every field CreateEndpointConfig was given (VpcConfig,
  EnableNetworkIsolation, ExecutionRoleArn, ShadowProductionVariants, ExplainerConfig, ...);
- duplicate: a second CreateEndpointConfig with an existing name is refused and the first
  config stays as it was;
- retain: UpdateEndpoint with RetainAllVariantProperties keeps the weights set by
  UpdateEndpointWeightsAndCapacities, and the request is recorded at /_rekey/sagemaker.
Exit 0 when the behaviour holds, 1 otherwise (as on plain moto).
"""

import json
import sys
import time
import urllib.request
import uuid

import boto3


def client(endpoint):
    return boto3.client("sagemaker", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def model(sm, n, name):
    sm.create_model(ModelName=f"{name}-{n}", ExecutionRoleArn="arn:aws:iam::123456789012:role/sm",
                    PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1"})
    return f"{name}-{n}"


def whole(endpoint):
    sm, n = client(endpoint), uuid.uuid4().hex[:8]
    m = model(sm, n, "m")
    given = dict(
        ProductionVariants=[{"VariantName": "v", "ModelName": m, "InitialInstanceCount": 1,
                             "InstanceType": "ml.m5.large", "InitialVariantWeight": 1.0}],
        ShadowProductionVariants=[{"VariantName": "s", "ModelName": m, "InitialInstanceCount": 1,
                                   "InstanceType": "ml.m5.large", "InitialVariantWeight": 1.0}],
        VpcConfig={"SecurityGroupIds": ["sg-1"], "Subnets": ["subnet-1"]},
        EnableNetworkIsolation=True,
        ExecutionRoleArn="arn:aws:iam::123456789012:role/sm",
        ExplainerConfig={"ClarifyExplainerConfig": {
            "ShapConfig": {"ShapBaselineConfig": {"MimeType": "text/csv"}}}},
    )
    sm.create_endpoint_config(EndpointConfigName=f"c-{n}", **given)
    got = sm.describe_endpoint_config(EndpointConfigName=f"c-{n}")
    missing = [k for k, v in given.items() if got.get(k) != v]
    if missing:
        print(f"fields not echoed: {missing}", file=sys.stderr)
        return 1
    return 0


def duplicate(endpoint):
    sm, n = client(endpoint), uuid.uuid4().hex[:8]
    m = model(sm, n, "m")
    v = lambda t: [{"VariantName": "v", "ModelName": m, "InitialInstanceCount": 1, "InstanceType": t}]
    sm.create_endpoint_config(EndpointConfigName=f"c-{n}", ProductionVariants=v("ml.m5.large"))
    try:
        sm.create_endpoint_config(EndpointConfigName=f"c-{n}", ProductionVariants=v("ml.c5.large"))
    except sm.exceptions.ClientError as e:
        if "already existing" not in str(e):
            print(f"refused, but not as AWS does: {e}", file=sys.stderr)
            return 1
    else:
        print("a second config with the same name was accepted", file=sys.stderr)
        return 1
    got = sm.describe_endpoint_config(EndpointConfigName=f"c-{n}")
    return 0 if got["ProductionVariants"][0]["InstanceType"] == "ml.m5.large" else 1


def retain(endpoint):
    sm, n = client(endpoint), uuid.uuid4().hex[:8]
    m = model(sm, n, "m")
    v = [{"VariantName": "a", "ModelName": m, "InitialInstanceCount": 1,
          "InstanceType": "ml.m5.large", "InitialVariantWeight": 1.0},
         {"VariantName": "b", "ModelName": m, "InitialInstanceCount": 1,
          "InstanceType": "ml.m5.large", "InitialVariantWeight": 1.0}]
    sm.create_endpoint_config(EndpointConfigName=f"old-{n}", ProductionVariants=v)
    sm.create_endpoint_config(EndpointConfigName=f"new-{n}", ProductionVariants=v)
    sm.create_endpoint(EndpointName=f"e-{n}", EndpointConfigName=f"old-{n}")
    sm.update_endpoint_weights_and_capacities(EndpointName=f"e-{n}", DesiredWeightsAndCapacities=[
        {"VariantName": "a", "DesiredWeight": 0.2, "DesiredInstanceCount": 3}])
    try:
        sm.update_endpoint(EndpointName=f"e-{n}", EndpointConfigName=f"new-{n}",
                           RetainAllVariantProperties=True, RetainDeploymentConfig=True)
    except Exception as e:
        print(f"UpdateEndpoint failed: {e}", file=sys.stderr)
        return 1
    for _ in range(50):
        d = sm.describe_endpoint(EndpointName=f"e-{n}")
        if d["EndpointStatus"] == "InService" and d["EndpointConfigName"] == f"new-{n}":
            break
        time.sleep(0.2)
    else:
        return 1
    a = next(x for x in d["ProductionVariants"] if x["VariantName"] == "a")
    if a.get("CurrentWeight") != 0.2 or a.get("CurrentInstanceCount") != 3:
        print(f"variant a was reset: {a}", file=sys.stderr)
        return 1
    try:
        with urllib.request.urlopen(f"{endpoint}/_rekey/sagemaker") as r:
            updates = json.load(r)["updates"]
    except Exception as e:
        print(f"no record of updates: {e}", file=sys.stderr)
        return 1
    mine = [u for u in updates if u.get("EndpointName") == f"e-{n}"]
    return 0 if mine and mine[-1].get("RetainAllVariantProperties") is True else 1


if __name__ == "__main__":
    sys.exit({"whole": whole, "duplicate": duplicate, "retain": retain}[sys.argv[2]](sys.argv[1]))

"""Checks the overlay's SageMaker UpdateEndpoint against an emulator endpoint.

Exit 0 when UpdateEndpoint is accepted, the endpoint goes Updating, and within a bounded
wait is InService on the new config; exit 1 otherwise (as on plain moto).
"""

import sys
import time
import uuid

import boto3


def main(endpoint):
    sm = boto3.client(
        "sagemaker",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    n = uuid.uuid4().hex[:8]
    sm.create_model(
        ModelName=f"m-{n}",
        ExecutionRoleArn="arn:aws:iam::123456789012:role/sm",
        PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1"},
    )
    variant = [{"VariantName": "v", "ModelName": f"m-{n}", "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large"}]
    sm.create_endpoint_config(EndpointConfigName=f"old-{n}", ProductionVariants=variant)
    sm.create_endpoint_config(EndpointConfigName=f"new-{n}", ProductionVariants=variant,
                              KmsKeyId="arn:aws:kms:us-east-1:123456789012:key/abc")
    sm.create_endpoint(EndpointName=f"e-{n}", EndpointConfigName=f"old-{n}")
    try:
        sm.update_endpoint(EndpointName=f"e-{n}", EndpointConfigName=f"new-{n}")
    except Exception as e:  # plain moto: not implemented
        print(f"UpdateEndpoint failed: {e}", file=sys.stderr)
        return 1
    first = sm.describe_endpoint(EndpointName=f"e-{n}")
    if first["EndpointStatus"] != "Updating":
        print(f"right after UpdateEndpoint the status is {first['EndpointStatus']}", file=sys.stderr)
        return 1
    for _ in range(50):
        d = sm.describe_endpoint(EndpointName=f"e-{n}")
        if d["EndpointStatus"] == "InService":
            return 0 if d["EndpointConfigName"] == f"new-{n}" else 1
        time.sleep(0.2)
    print("endpoint never came back InService", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

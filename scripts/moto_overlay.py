"""moto in server mode, with the AWS behaviour rekey relies on and moto 5.2.5 lacks.

Run as `python moto_overlay.py --port N` (or `--plain` for unmodified moto, which the
overlay's own tests use to show that each behaviour really is missing there).

Each behaviour below follows AWS's documented semantics and is switched on by the
overlay only; each has a test in tests/integration/overlay.rs that fails on plain moto:

1. CopyObject and UploadPartCopy honour `x-amz-copy-source-if-match` (412 PreconditionFailed).
2. SSE-KMS writes (PutObject, CopyObject, CreateMultipartUpload, and writes that take the
   bucket's default rule) fail with KMS.NotFoundException for a missing key and
   KMS.DisabledException / KMS.KMSInvalidStateException for a disabled or pending-deletion key.
3. The object's SSEKMSKeyId is the key ARN whatever form the writer sent (key id, alias,
   alias ARN); `aws:kms` with no key uses the account's AWS-managed `aws/s3` key
   (KeyManager AWS) and reports its ARN.
4. UpdateObjectEncryption (`PUT /{Bucket}/{Key}?encryption`): key ARN only; refuses
   unencrypted and SSE-C objects (InvalidRequest); ETag, storage class and LastModified stay.
5. SageMaker UpdateEndpoint: the endpoint goes Updating, then InService after
   REKEY_OVERLAY_UPDATE_SECONDS (default 1), or at the REKEY_OVERLAY_UPDATE_POLLS-th
   DescribeEndpoint after it, reporting the new config.
9. Fault injection for tests (see Faults): 503 SlowDown for a share of a bucket prefix's requests.
8. HEAD/GET of a DSSE-KMS object report its KMS key (moto reports it only for aws:kms).
7. GetBucketVersioning answers with the documented `VersioningConfiguration` root element
   (moto 5.2.5 answers `GetBucketVersioningResponse`, which the Rust SDK refuses to parse);
   ListParts likewise with `ListPartsResult` (moto: `ListPartsResponse`), and
   GetBucketNotificationConfiguration with `NotificationConfiguration` (moto:
   `GetBucketNotificationResponse` when there is none) and with the `EventBridgeConfiguration`
   that moto forgets; GetBucketReplication with the configuration as it was put (moto drops
   SourceSelectionCriteria).
6. SSE-C objects are remembered as SSE-C: HEAD/GET without the customer key answer
   400, with it they report the algorithm and key MD5 (moto drops SSE-C entirely).
10. Destination conditions: CopyObject honours `If-Match` / `If-None-Match` on the destination
   object, CompleteMultipartUpload honours `If-Match` (412 PreconditionFailed; 404 NoSuchKey
   when If-Match names an object that does not exist), as S3's conditional writes do.
11. The bucket rule's `BlockedEncryptionTypes` is kept and reported by GetBucketEncryption, and
   an SSE-C write into a bucket that blocks SSE-C is refused with 403 AccessDenied.
13. A bucket created without `x-amz-object-ownership` gets Object Ownership
   BucketOwnerEnforced (ACLs off), as S3 has done for new buckets since April 2023; moto leaves
   it unset, which reads as a legacy bucket with ACLs.
12. Interleaving hooks for tests (scripts/fault_hook.py): at the N-th request signed with a
   given access key, pause (the test writes or kills rekey meanwhile) or fail with a 5xx or a
   409 ConditionalRequestConflict, before or after the request is served.

14. SageMaker endpoint configs are stored whole: CreateEndpointConfig keeps every field of the
   request and DescribeEndpointConfig echoes them back as AWS does (moto 5.2.5 drops
   ExecutionRoleArn, VpcConfig, EnableNetworkIsolation, ShadowProductionVariants,
   ExplainerConfig, ...), with EndpointConfigArn and CreationTime, without Tags; a second
   CreateEndpointConfig with an existing name is refused (ValidationException "Cannot create
   already existing endpoint configuration"; moto overwrites). A test may make it refuse a
   KmsKeyId for instance types with local storage (POST /_rekey/sagemaker
   {"refuse_kms_for": ["ml.g4dn"]}), as older SageMaker did.
15. UpdateEndpoint requests are recorded (GET /_rekey/sagemaker → {"updates": [...]}); with
   RetainAllVariantProperties the endpoint keeps its variants' current weights and instance
   counts (as set by UpdateEndpointWeightsAndCapacities), otherwise they reset to the new
   config's initial values.

16. CloudFront distribution origins keep `S3OriginConfig.OriginAccessIdentity` and
   `OriginAccessControlId` (moto 5.2.5 drops both from every answer), so that a reader of
   ListDistributions sees how each origin signs its requests to S3.
18. Bucket inventory configurations are answered as they were put (moto 5.2.5 reports every
   configuration with IncludedObjectVersions All and its OptionalFields in another shape).
19. A test-only trigger delivers an S3 Inventory report in AWS's layout from a bucket's
   current state: `POST /_rekey/inventory {"bucket": B, "id": ID, "at": "YYYY-MM-DDTHH-MMZ",
   "rows_per_file": N}` writes `PREFIX/B/ID/AT/manifest.json` (sourceBucket,
   destinationBucket, version, creationTimestamp, fileFormat CSV, fileSchema, files with key,
   size and MD5checksum), `manifest.checksum` (the manifest's MD5) and gzip CSV data files
   under `PREFIX/B/ID/data/` (no header, every value quoted, keys URL-encoded with `+` for a
   space), with the columns the configuration asks for, in AWS's order.
20. S3 Batch Operations jobs (S3 Control CreateJob, DescribeJob, ListJobs, UpdateJobStatus)
   run for real over moto's objects, with AWS's statuses, idempotency token and completion
   report: see scripts/overlay_batch.py.
17. S3 Control answers under AWS's root elements (`ListAccessPointsResult`,
   `GetAccessPointPolicyResult`, ...; moto 5.2.5 answers `...Response`, which the Rust SDK
   refuses to parse).

Only path-style S3 requests are inspected (the SDK uses path style against an endpoint).
"""

import argparse
import io
import json
import os
import re
import sys
import threading
import time
from urllib.parse import parse_qs, unquote
from xml.sax.saxutils import escape

from werkzeug.serving import run_simple
from werkzeug.wrappers import Response

from fault_hook import Hooks
from overlay_batch import BatchJobs
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)

KEY_ARN_RE = re.compile(r"^arn:aws[a-zA-Z0-9-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[a-zA-Z0-9-]+$")
SSE_C_ALGO = "HTTP_X_AMZ_SERVER_SIDE_ENCRYPTION_CUSTOMER_ALGORITHM"
SSE_C_MD5 = "HTTP_X_AMZ_SERVER_SIDE_ENCRYPTION_CUSTOMER_KEY_MD5"
SSE = "HTTP_X_AMZ_SERVER_SIDE_ENCRYPTION"
SSE_KEY = "HTTP_X_AMZ_SERVER_SIDE_ENCRYPTION_AWS_KMS_KEY_ID"


def s3_error(status, code, message, extra=""):
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>{extra}"
        "<RequestId>overlay</RequestId></Error>"
    )
    return Response(body, status=status, content_type="application/xml")


def json_error(status, code, message):
    return Response(
        json.dumps({"__type": code, "message": message}),
        status=status,
        content_type="application/x-amz-json-1.1",
        headers={"x-amzn-ErrorType": code},
    )


def credential_scope(environ):
    """(service, region, access key) from a SigV4 Authorization header, or Nones."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    try:
        cred = auth.split(",")[0].split()[1].split("=", 1)[1]
        access_key, _, region, service, _ = cred.split("/")
        return service, region, access_key
    except (IndexError, ValueError):
        return None, None, None


def read_body(environ):
    """Read the request body and put it back so that moto can read it again."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


class KeyProblem(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def kms_backend(account_id, region):
    from moto.kms.models import kms_backends

    return kms_backends[account_id][region]


def aws_managed_s3_key(account_id, region):
    backend = kms_backend(account_id, region)
    key_id = backend.get_key_id_from_alias("alias/aws/s3")
    key = backend.keys[key_id]
    key.key_manager = "AWS"
    key.description = "Default key that protects my S3 objects when no other key is defined"
    return key


def resolve_kms_key(given, account_id, region):
    """The KMS key a write names (id, ARN, alias or alias ARN), checked usable, as its ARN."""
    if not given:
        return aws_managed_s3_key(account_id, region).arn
    key_account, key_region = account_id, region
    if given.startswith("arn:"):
        parts = given.split(":")
        if len(parts) >= 6:
            key_region, key_account = parts[3], parts[4]
    backend = kms_backend(key_account, key_region)
    try:
        key_id = backend.any_id_to_key_id(given)
    except Exception:
        key_id = None
    if (not key_id or key_id not in backend.keys) and given.endswith("alias/aws/s3"):
        return aws_managed_s3_key(key_account, key_region).arn
    key = backend.keys.get(key_id) if key_id else None
    if key is None:
        raise KeyProblem("KMS.NotFoundException", f"Invalid keyId '{given}'")
    if key.key_state == "Disabled":
        raise KeyProblem("KMS.DisabledException", f"{key.arn} is disabled.")
    if key.key_state != "Enabled":
        raise KeyProblem("KMS.KMSInvalidStateException", f"{key.arn} is pending deletion.")
    if (key.key_usage or "ENCRYPT_DECRYPT") != "ENCRYPT_DECRYPT" or (
        key.key_spec or "SYMMETRIC_DEFAULT"
    ) != "SYMMETRIC_DEFAULT":
        raise KeyProblem("KMS.InvalidKeyUsageException", f"{key.arn} cannot encrypt S3 data keys.")
    return key.arn


def s3_backend_for(bucket):
    from moto.s3.models import s3_backends

    owner = s3_backends.bucket_accounts.get(bucket)
    if owner is None:
        return None
    partition, account_id = owner
    return s3_backends[account_id][partition]


def split_path(environ):
    path = environ.get("PATH_INFO", "")
    parts = path.lstrip("/").split("/", 1)
    bucket = unquote(parts[0]) if parts and parts[0] else None
    key = unquote(parts[1]) if len(parts) > 1 and parts[1] else None
    return bucket, key


def lookup_object(backend, bucket, key, version_id=None):
    try:
        return backend.get_object(bucket, key, version_id=version_id)
    except Exception:
        return None


class Faults:
    """Fault injection for tests: `POST /_rekey/faults` with
    {"bucket_prefix": "t3-", "rate": 0.3, "seed": 7} makes that share of S3 requests to buckets
    with that prefix answer 503 SlowDown, as S3 does under load; {"rate": 0} stops it.
    Every injected fault is counted; `GET /_rekey/faults` returns the counts."""

    def __init__(self):
        import random

        self.lock = threading.Lock()
        self.rules = {}
        self.injected = {}
        self.random = random.Random(0)

    def configure(self, body):
        import random

        with self.lock:
            prefix = body.get("bucket_prefix", "")
            if body.get("rate", 0) <= 0:
                self.rules.pop(prefix, None)
            else:
                self.rules[prefix] = float(body["rate"])
            if "seed" in body:
                self.random = random.Random(body["seed"])

    def should_fail(self, bucket):
        with self.lock:
            for prefix, rate in self.rules.items():
                if bucket and bucket.startswith(prefix) and self.random.random() < rate:
                    self.injected[prefix] = self.injected.get(prefix, 0) + 1
                    return True
        return False


class Overlay:
    def __init__(self, app):
        self.app = app
        self.update_seconds = float(os.environ.get("REKEY_OVERLAY_UPDATE_SECONDS", "1"))
        # With REKEY_OVERLAY_UPDATE_POLLS=N an update finishes at the N-th DescribeEndpoint
        # after it instead of after a delay: a request sequence tests can count on.
        polls = os.environ.get("REKEY_OVERLAY_UPDATE_POLLS")
        self.update_polls = int(polls) if polls else None
        self.pending_updates = {}
        # (account, region, name) -> DescribeEndpointConfig answer; recorded UpdateEndpoints.
        self.sm_configs = {}
        self.sm_updates = []
        # Buckets whose notification configuration turns EventBridge on.
        self.eventbridge = set()
        # Bucket -> the replication configuration as put.
        self.replication = {}
        # (bucket, id) -> the inventory configuration as put (XML).
        self.inventory = {}
        self.refuse_kms_for = []
        self.faults = Faults()
        self.hooks = Hooks()
        self.batch = BatchJobs((s3_backend_for, lookup_object, resolve_kms_key, KeyProblem))

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_rekey/hook"):
            query = parse_qs(environ.get("QUERY_STRING", ""))
            body = read_body(environ) if environ["REQUEST_METHOD"] == "POST" else b""
            status, text = self.hooks.handle(environ["REQUEST_METHOD"], path, query, body)
            return Response(text, status=status, content_type="application/json")(
                environ, start_response
            )
        service, _, access_key = credential_scope(environ)
        if self.hooks.armed() and access_key:
            return self.through_hook(environ, start_response, service, access_key)
        return self.dispatch(environ, start_response)

    def through_hook(self, environ, start_response, service, access_key):
        """Serve a request through the test hook of its access key (scripts/fault_hook.py)."""
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        desc = f"{service} {environ['REQUEST_METHOD']} {environ.get('PATH_INFO', '')}"
        if environ.get("QUERY_STRING"):
            desc += "?" + environ["QUERY_STRING"]
        if target:
            desc += " " + target

        # Buffer the body now: a failure injected after the request was served must not
        # read a socket the request already drained.
        read_body(environ)

        def serve():
            captured = {"extra": []}

            def capture(status, headers, exc_info=None):
                captured["status"], captured["headers"] = status, headers
                return captured["extra"].append

            chunks = list(self.dispatch(environ, capture))
            return captured["status"], captured["headers"], b"".join(captured["extra"] + chunks)

        def fail(status, code):
            if service == "s3":
                resp = s3_error(status, code, f"injected by a test hook ({code})")
            else:
                resp = json_error(status, code, f"injected by a test hook ({code})")
            return f"{status} {resp.status.split(' ', 1)[1]}", list(resp.headers.items()), resp.get_data()

        status, headers, body = self.hooks.serve(access_key, desc, serve, fail)
        # A HEAD answer's Content-Length is the object's size, not the (empty) body's.
        if environ["REQUEST_METHOD"] != "HEAD":
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Content-Length", str(len(body))))
        start_response(status, headers)
        return [body]

    def dispatch(self, environ, start_response):
        if environ.get("PATH_INFO") == "/moto-api/reset":
            self.eventbridge.clear()
            self.replication.clear()
            self.inventory.clear()
            self.sm_configs.clear()
            self.sm_updates.clear()
            self.refuse_kms_for = []
            self.batch.reset()
        if environ.get("PATH_INFO") == "/_rekey/batch" and environ["REQUEST_METHOD"] == "POST":
            self.batch.configure(json.loads(read_body(environ) or b"{}"))
            return Response("{}", content_type="application/json")(environ, start_response)
        if environ.get("PATH_INFO") == "/_rekey/sagemaker":
            if environ["REQUEST_METHOD"] == "POST":
                conf = json.loads(read_body(environ) or b"{}")
                self.refuse_kms_for = list(conf.get("refuse_kms_for", []))
            body = json.dumps({"updates": self.sm_updates, "refuse_kms_for": self.refuse_kms_for})
            return Response(body, content_type="application/json")(environ, start_response)
        if environ.get("PATH_INFO") == "/_rekey/inventory" and environ["REQUEST_METHOD"] == "POST":
            conf = json.loads(read_body(environ) or b"{}")
            try:
                out = self.deliver_inventory_report(conf)
            except (KeyError, ValueError) as e:
                return json_error(400, "InvalidRequest", str(e))(environ, start_response)
            return Response(json.dumps(out), content_type="application/json")(environ, start_response)
        if environ.get("PATH_INFO") == "/_rekey/faults":
            if environ["REQUEST_METHOD"] == "POST":
                self.faults.configure(json.loads(read_body(environ) or b"{}"))
            with self.faults.lock:
                counts = dict(self.faults.injected)
            return Response(json.dumps(counts), content_type="application/json")(environ, start_response)
        service, region, _ = credential_scope(environ)
        if service == "s3" and self.faults.rules:
            bucket, _ = split_path(environ)
            if self.faults.should_fail(bucket):
                read_body(environ)
                return s3_error(503, "SlowDown", "Please reduce your request rate.")(environ, start_response)
        try:
            if service == "s3" and environ.get("PATH_INFO", "").startswith("/v20180820/jobs"):
                body = read_body(environ) if environ["REQUEST_METHOD"] == "POST" else b""
                return self.batch.handle(environ, body)(environ, start_response)
            if service == "s3" and environ.get("PATH_INFO", "").startswith("/v20180820/"):
                return self.s3control_as_aws(environ, start_response)
            if service == "s3":
                return self.s3(environ, start_response, region or "us-east-1")
            if service == "sagemaker":
                resp = self.sagemaker(environ, start_response, region or "us-east-1")
                if resp is not None:
                    return resp(environ, start_response)
        except KeyProblem as problem:
            return s3_error(400, problem.code, problem.message)(environ, start_response)
        return self.app(environ, start_response)

    # ---- S3 Control (behaviour 17) ---------------------------------------------------------
    def s3control_as_aws(self, environ, start_response):
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        body = b"".join(self.app(environ, capture))
        if not body.lstrip().startswith(b"<?xml") or b"<ErrorResponse" in body:
            start_response(captured["status"], captured["headers"])
            return [body]
        body = re.sub(rb"<(/?)(\w+)Response([ >])", rb"<\1\2Result\3", body, count=2)
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
        start_response(captured["status"], headers)
        return [body]

    # ---- S3 -------------------------------------------------------------------------
    def s3(self, environ, start_response, region):
        method = environ["REQUEST_METHOD"]
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        bucket, key = split_path(environ)
        backend = s3_backend_for(bucket) if bucket else None
        if backend is not None and key is None and method == "GET" and "versioning" in query:
            return self.fix_versioning_root(environ, start_response)
        if backend is not None and key is None and "inventory" in query:
            return self.inventory_as_stored(environ, start_response, method, bucket, query)
        if backend is not None and key is None and "replication" in query:
            return self.replication_as_stored(environ, start_response, method, bucket)
        if backend is not None and key is None and "notification" in query:
            if method == "PUT":
                # moto drops an empty <EventBridgeConfiguration/>: remember it.
                body = read_body(environ)
                if b"<EventBridgeConfiguration" in body:
                    self.eventbridge.add(bucket)
                else:
                    self.eventbridge.discard(bucket)
                return self.app(environ, start_response)
            if method == "GET":
                return self.notification_as_aws(environ, start_response, bucket)
        if backend is not None and key is None and method == "GET" and "encryption" in query:
            resp = self.bucket_encryption_with_blocked_types(backend, bucket)
            if resp is not None:
                return resp(environ, start_response)
        if key is None and bucket and method == "PUT" and not query:
            return self.create_bucket(environ, start_response, bucket)
        if key is not None and method == "GET" and "uploadId" in query:
            return self.fix_root(environ, start_response, b"ListPartsResponse", b"ListPartsResult")
        if backend is None or key is None:
            return self.app(environ, start_response)
        account_id = backend.account_id

        if method == "PUT" and "encryption" in query:
            version = query.get("versionId", [None])[0]
            return self.update_object_encryption(
                environ, backend, bucket, key, version, region
            )(environ, start_response)

        copy_source = environ.get("HTTP_X_AMZ_COPY_SOURCE")
        if method == "PUT" and copy_source:
            failed = self.copy_precondition(environ, copy_source)
            if failed is None and "partNumber" not in query:
                failed = self.destination_precondition(environ, backend, bucket, key, True)
            if failed is not None:
                return failed(environ, start_response)
        if method == "POST" and "uploadId" in query:
            failed = self.destination_precondition(environ, backend, bucket, key, False)
            if failed is not None:
                return failed(environ, start_response)

        is_object_write = (method == "PUT" and "partNumber" not in query) or (
            method == "POST" and "uploads" in query
        )
        if is_object_write and not environ.get(SSE_C_ALGO):
            self.normalise_sse_kms(environ, backend, bucket, account_id, region)

        if method in ("GET", "HEAD") and not query.keys() - {"versionId", "partNumber", "x-id"}:
            version = query.get("versionId", [None])[0]
            obj = lookup_object(backend, bucket, key, version)
            marked = getattr(obj, "overlay_sse_c", None) if obj is not None else None
            if marked is not None:
                if not environ.get(SSE_C_ALGO):
                    if method == "HEAD":
                        return Response(status=400)(environ, start_response)
                    return s3_error(
                        400,
                        "InvalidRequest",
                        "The object was stored using a form of Server Side Encryption. "
                        "The correct parameters must be provided to retrieve the object.",
                    )(environ, start_response)
                return self.app(environ, self.add_sse_c_headers(start_response, marked))
            if obj is not None and obj.encryption == "aws:kms:dsse" and obj.kms_key_id:
                return self.app(environ, self.add_dsse_key_header(start_response, obj.kms_key_id))

        if is_object_write and environ.get(SSE_C_ALGO) and self.blocks_sse_c(backend, bucket):
            read_body(environ)
            return s3_error(
                403, "AccessDenied", "SSE-C is blocked for this bucket (BlockedEncryptionTypes)."
            )(environ, start_response)
        if is_object_write and environ.get(SSE_C_ALGO):
            algo, md5 = environ.get(SSE_C_ALGO), environ.get(SSE_C_MD5, "")
            status = {}

            def capture(st, headers, exc_info=None):
                status["code"] = int(st.split()[0])
                return start_response(st, headers, exc_info)

            out = self.app(environ, self.add_sse_c_headers(capture, (algo, md5)))
            out = list(out)
            if status.get("code") == 200 and method == "PUT":
                obj = lookup_object(backend, bucket, key)
                if obj is not None:
                    obj.overlay_sse_c = (algo, md5)
                    obj.encryption = None
                    obj.kms_key_id = None
            return out
        return self.app(environ, start_response)

    def create_bucket(self, environ, start_response, bucket):
        """CreateBucket, then BucketOwnerEnforced unless the request chose an ownership."""
        chosen = environ.get("HTTP_X_AMZ_OBJECT_OWNERSHIP")
        status = {}

        def capture(st, headers, exc_info=None):
            status["code"] = int(st.split()[0])
            return start_response(st, headers, exc_info)

        out = list(self.app(environ, capture))
        if status.get("code") == 200 and not chosen:
            backend = s3_backend_for(bucket)
            if backend is not None:
                backend.put_bucket_ownership_controls(bucket, "BucketOwnerEnforced")
        return out

    def fix_versioning_root(self, environ, start_response):
        """GetBucketVersioning answers with AWS's `VersioningConfiguration` root element."""
        return self.fix_root(
            environ, start_response, b"GetBucketVersioningResponse", b"VersioningConfiguration"
        )

    def replication_as_stored(self, environ, start_response, method, bucket):
        """GetBucketReplication answers with the configuration as it was put (moto drops
        SourceSelectionCriteria, among others)."""
        body = read_body(environ) if method == "PUT" else b""
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda _data: None

        answer = b"".join(self.app(environ, capture))
        ok = captured["status"].startswith("2")
        if method == "PUT" and ok:
            self.replication[bucket] = body
        elif method == "DELETE" and ok:
            self.replication.pop(bucket, None)
        elif method == "GET" and ok and bucket in self.replication:
            answer = self.replication[bucket]
            if not answer.lstrip().startswith(b"<?xml"):
                answer = b'<?xml version="1.0" encoding="UTF-8"?>\n' + answer
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(answer))))
        start_response(captured["status"], headers)
        return [answer]

    def inventory_as_stored(self, environ, start_response, method, bucket, query):
        """Behaviour 18: Get/List answer the configurations as they were put."""
        body = read_body(environ) if method == "PUT" else b""
        cid = (query.get("id") or [""])[0]
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda _data: None

        answer = b"".join(self.app(environ, capture))
        ok = captured["status"].startswith("2")
        if method == "PUT" and ok:
            self.inventory[(bucket, cid)] = re.sub(rb"^\s*<\?xml[^>]*\?>\s*", b"", body)
        elif method == "DELETE" and ok:
            self.inventory.pop((bucket, cid), None)
        elif method == "GET" and ok and cid and (bucket, cid) in self.inventory:
            answer = b'<?xml version="1.0" encoding="UTF-8"?>\n' + self.inventory[(bucket, cid)]
        elif method == "GET" and ok and not cid:
            items = b"".join(v for (b, _), v in sorted(self.inventory.items()) if b == bucket)
            answer = (b'<?xml version="1.0" encoding="UTF-8"?>\n<ListInventoryConfigurationsResult'
                      b' xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' + items
                      + b"<IsTruncated>false</IsTruncated></ListInventoryConfigurationsResult>")
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(answer))))
        start_response(captured["status"], headers)
        return [answer]

    # Columns of a CSV report in AWS's order (after Bucket, Key and the version columns).
    REPORT_FIELDS = ["Size", "LastModifiedDate", "ETag", "StorageClass", "IsMultipartUploaded",
                     "ReplicationStatus", "EncryptionStatus", "ObjectLockRetainUntilDate",
                     "ObjectLockMode", "ObjectLockLegalHoldStatus",
                     "IntelligentTieringAccessTier", "BucketKeyStatus", "ChecksumAlgorithm"]

    def deliver_inventory_report(self, conf):
        """Behaviour 19: a report of the bucket's current state, in AWS's layout."""
        import csv
        import gzip
        import hashlib
        import uuid
        import xml.etree.ElementTree as ET
        from datetime import datetime, timezone
        from urllib.parse import quote_plus

        bucket, cid = conf["bucket"], conf["id"]
        rows_per_file = int(conf.get("rows_per_file", 1000))
        xml = self.inventory.get((bucket, cid))
        if xml is None:
            raise KeyError(f"no inventory configuration {cid} on {bucket}")
        root = ET.fromstring(xml)
        for el in root.iter():
            el.tag = el.tag.split("}", 1)[-1]
        dest = root.find("Destination/S3BucketDestination")
        dest_bucket = dest.findtext("Bucket").split(":::", 1)[-1]
        prefix = (dest.findtext("Prefix") or "").strip("/")
        all_versions = root.findtext("IncludedObjectVersions") == "All"
        optional = {f.text for f in root.findall("OptionalFields/Field")}
        filter_prefix = root.findtext("Filter/Prefix") or ""
        fields = ["Bucket", "Key"]
        if all_versions:
            fields += ["VersionId", "IsLatest", "IsDeleteMarker"]
        fields += [f for f in self.REPORT_FIELDS if f in optional]
        now = datetime.now(timezone.utc)
        at = conf.get("at") or now.strftime("%Y-%m-%dT%H-%MZ")
        base = f"{prefix}/{bucket}/{cid}" if prefix else f"{bucket}/{cid}"
        backend = s3_backend_for(bucket)
        source = backend.get_bucket(bucket)
        versioned = source.versioning_status is not None

        def row(obj, latest):
            marker = not hasattr(obj, "size")
            values = {"Bucket": bucket, "Key": quote_plus(obj.name, safe="/")}
            if all_versions:
                vid = obj.version_id if versioned and obj.version_id != "null" else ""
                values.update(VersionId=vid, IsLatest="true" if latest else "false",
                              IsDeleteMarker="true" if marker else "false")
            if not marker:
                sse_c = getattr(obj, "overlay_sse_c", None) is not None
                enc = obj.encryption
                status = ("SSE-C" if sse_c else "SSE-KMS" if enc == "aws:kms"
                          else "DSSE-KMS" if enc == "aws:kms:dsse" else "SSE-S3" if enc == "AES256"
                          else "NOT-SSE")
                values.update(
                    Size=str(obj.size),
                    LastModifiedDate=obj.last_modified.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                    ETag=obj.etag.strip('"'), StorageClass=obj.storage_class,
                    IsMultipartUploaded="true" if "-" in obj.etag else "false",
                    ReplicationStatus="", EncryptionStatus=status,
                    ObjectLockRetainUntilDate=obj.lock_until or "",
                    ObjectLockMode=obj.lock_mode or "",
                    ObjectLockLegalHoldStatus=obj.lock_legal_status or "OFF",
                    IntelligentTieringAccessTier=(
                        "FREQUENT" if obj.storage_class == "INTELLIGENT_TIERING" else ""),
                    BucketKeyStatus="ENABLED" if obj.bucket_key_enabled else "DISABLED",
                    ChecksumAlgorithm=obj.checksum_algorithm or "")
            return [values.get(f, "") for f in fields]

        rows = []
        for name, versions in sorted(source.keys.iterlists()):
            if not name.startswith(filter_prefix):
                continue
            if all_versions:
                for i, v in enumerate(versions):
                    rows.append(row(v, i == len(versions) - 1))
            elif versions and hasattr(versions[-1], "size"):
                rows.append(row(versions[-1], True))
        files = []
        for start in range(0, max(len(rows), 1), rows_per_file):
            text = io.StringIO()
            csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(
                rows[start:start + rows_per_file])
            data = gzip.compress(text.getvalue().encode("utf-8"))
            key = f"{base}/data/{uuid.uuid4()}.csv.gz"
            backend.put_object(dest_bucket, key, data)
            files.append({"key": key, "size": len(data),
                          "MD5checksum": hashlib.md5(data).hexdigest()})
        manifest = json.dumps({
            "sourceBucket": bucket, "destinationBucket": f"arn:aws:s3:::{dest_bucket}",
            "version": "2016-11-30", "creationTimestamp": str(int(now.timestamp() * 1000)),
            "fileFormat": "CSV", "fileSchema": ", ".join(fields), "files": files}).encode()
        backend.put_object(dest_bucket, f"{base}/{at}/manifest.json", manifest)
        backend.put_object(dest_bucket, f"{base}/{at}/manifest.checksum",
                           hashlib.md5(manifest).hexdigest().encode())
        return {"manifest": f"s3://{dest_bucket}/{base}/{at}/manifest.json", "rows": len(rows),
                "files": [f["key"] for f in files]}

    def notification_as_aws(self, environ, start_response, bucket):
        """AWS's root element, and the EventBridge configuration moto forgets."""
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda _data: None

        body = b"".join(self.app(environ, capture))
        body = body.replace(b"GetBucketNotificationResponse", b"NotificationConfiguration")
        if bucket in self.eventbridge and captured["status"].startswith("200"):
            if body.rstrip().endswith(b"/>"):
                # An empty configuration element: open it.
                body = body.rstrip()[:-2] + b"></NotificationConfiguration>"
            body = body.replace(
                b"</NotificationConfiguration>",
                b"<EventBridgeConfiguration></EventBridgeConfiguration></NotificationConfiguration>",
            )
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
        start_response(captured["status"], headers)
        return [body]

    def fix_root(self, environ, start_response, wrong, right):
        """Answer with AWS's root element where moto names it otherwise."""
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda _data: None

        body = b"".join(self.app(environ, capture))
        body = body.replace(wrong, right)
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
        start_response(captured["status"], headers)
        return [body]

    @staticmethod
    def add_dsse_key_header(start_response, key_arn):
        def wrapped(status, headers, exc_info=None):
            name = "x-amz-server-side-encryption-aws-kms-key-id"
            headers = [h for h in headers if h[0].lower() != name]
            headers.append((name, key_arn))
            return start_response(status, headers, exc_info)

        return wrapped

    @staticmethod
    def add_sse_c_headers(start_response, marked):
        algo, md5 = marked

        def wrapped(status, headers, exc_info=None):
            headers = [h for h in headers if not h[0].lower().startswith("x-amz-server-side")]
            headers.append(("x-amz-server-side-encryption-customer-algorithm", algo))
            if md5:
                headers.append(("x-amz-server-side-encryption-customer-key-MD5", md5))
            return start_response(status, headers, exc_info)

        return wrapped

    @staticmethod
    def destination_precondition(environ, backend, bucket, key, if_none_match):
        """If-Match (and for CopyObject If-None-Match) on the destination object."""
        wanted = environ.get("HTTP_IF_MATCH")
        absent = environ.get("HTTP_IF_NONE_MATCH") if if_none_match else None
        if not wanted and not absent:
            return None
        current = lookup_object(backend, bucket, key)
        if wanted:
            if current is None:
                return s3_error(404, "NoSuchKey", "The specified key does not exist.")
            if wanted.strip().strip('"') not in ("*", current.etag.strip('"')):
                return s3_error(
                    412,
                    "PreconditionFailed",
                    "At least one of the pre-conditions you specified did not hold",
                    "<Condition>If-Match</Condition>",
                )
        if absent and current is not None and absent.strip().strip('"') in ("*", current.etag.strip('"')):
            return s3_error(
                412,
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold",
                "<Condition>If-None-Match</Condition>",
            )
        return None

    @staticmethod
    def blocked_types(backend, bucket):
        enc = backend.get_bucket(bucket).encryption or {}
        blocked = (enc.get("Rule") or {}).get("BlockedEncryptionTypes") or {}
        types = blocked.get("EncryptionType") or []
        return [types] if isinstance(types, str) else list(types)

    def blocks_sse_c(self, backend, bucket):
        return "SSE-C" in self.blocked_types(backend, bucket)

    def bucket_encryption_with_blocked_types(self, backend, bucket):
        """GetBucketEncryption with the rule's BlockedEncryptionTypes (moto drops them)."""
        enc = backend.get_bucket(bucket).encryption
        types = self.blocked_types(backend, bucket) if enc else []
        if not types:
            return None
        rule = enc["Rule"]
        default = rule.get("ApplyServerSideEncryptionByDefault", {})
        key = default.get("KMSMasterKeyID")
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<ServerSideEncryptionConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            "<Rule><ApplyServerSideEncryptionByDefault>"
            f"<SSEAlgorithm>{escape(default.get('SSEAlgorithm', ''))}</SSEAlgorithm>"
            + (f"<KMSMasterKeyID>{escape(key)}</KMSMasterKeyID>" if key else "")
            + "</ApplyServerSideEncryptionByDefault>"
            f"<BucketKeyEnabled>{str(rule.get('BucketKeyEnabled', 'false')).lower()}</BucketKeyEnabled>"
            "<BlockedEncryptionTypes>"
            + "".join(f"<EncryptionType>{escape(t)}</EncryptionType>" for t in types)
            + "</BlockedEncryptionTypes></Rule></ServerSideEncryptionConfiguration>"
        )
        return Response(body, status=200, content_type="application/xml")

    def copy_precondition(self, environ, copy_source):
        wanted = environ.get("HTTP_X_AMZ_COPY_SOURCE_IF_MATCH")
        if not wanted:
            return None
        source = unquote(copy_source.split("?", 1)[0]).lstrip("/")
        version = None
        if "?" in copy_source:
            version = parse_qs(copy_source.split("?", 1)[1]).get("versionId", [None])[0]
        src_bucket, _, src_key = source.partition("/")
        src_backend = s3_backend_for(src_bucket)
        obj = lookup_object(src_backend, src_bucket, src_key, version) if src_backend else None
        if obj is None:
            return None  # moto answers NoSuchKey itself
        if wanted.strip().strip('"') not in ("*", obj.etag.strip('"')):
            return s3_error(
                412,
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold",
                "<Condition>x-amz-copy-source-If-Match</Condition>",
            )
        return None

    def normalise_sse_kms(self, environ, backend, bucket, account_id, region):
        sse = environ.get(SSE)
        given = environ.get(SSE_KEY)
        bucket_obj = backend.get_bucket(bucket)
        if sse is None and bucket_obj.encryption:
            rule = bucket_obj.encryption.get("Rule", {})
            default = rule.get("ApplyServerSideEncryptionByDefault", {})
            sse = default.get("SSEAlgorithm")
            given = default.get("KMSMasterKeyID")
            if sse:
                environ[SSE] = sse
            if str(rule.get("BucketKeyEnabled", "")).lower() == "true":
                environ.setdefault(
                    "HTTP_X_AMZ_SERVER_SIDE_ENCRYPTION_BUCKET_KEY_ENABLED", "true"
                )
        if sse in ("aws:kms", "aws:kms:dsse"):
            environ[SSE_KEY] = resolve_kms_key(given, account_id, region)

    def update_object_encryption(self, environ, backend, bucket, key, version, region):
        body = read_body(environ).decode("utf-8", "replace")
        arn = re.search(r"<KMSKeyArn>\s*([^<]*?)\s*</KMSKeyArn>", body)
        bucket_key = re.search(r"<BucketKeyEnabled>\s*([^<]*?)\s*</BucketKeyEnabled>", body)
        if "<SSE-KMS>" not in body or arn is None:
            return s3_error(400, "MalformedXML", "The XML you provided was not well-formed.")
        arn = arn.group(1)
        if not KEY_ARN_RE.match(arn):
            return s3_error(400, "InvalidRequest", "KMSKeyArn must be a KMS key ARN.")
        obj = lookup_object(backend, bucket, key, version)
        if obj is None:
            return s3_error(404, "NoSuchKey", "The specified key does not exist.")
        if getattr(obj, "overlay_sse_c", None) is not None:
            return s3_error(
                400, "InvalidRequest", "UpdateObjectEncryption is not supported for SSE-C objects."
            )
        if not obj.encryption:
            return s3_error(
                400, "InvalidRequest", "UpdateObjectEncryption is not supported for unencrypted objects."
            )
        try:
            key_arn = resolve_kms_key(arn, backend.account_id, region)
        except KeyProblem as problem:
            return s3_error(400, problem.code, problem.message)
        obj.encryption = "aws:kms"
        obj.kms_key_id = key_arn
        obj.bucket_key_enabled = (
            "true" if bucket_key is not None and bucket_key.group(1).lower() == "true" else None
        )
        headers = {}
        if obj.version_id and obj.version_id != "null":
            headers["x-amz-version-id"] = obj.version_id
        return Response(status=200, headers=headers)

    # ---- SageMaker ------------------------------------------------------------------
    def sm_account(self, environ):
        account_id = os.environ.get("MOTO_ACCOUNT_ID", "123456789012")
        _, _, access_key = credential_scope(environ)
        try:
            from moto.core.utils import get_account_id_from  # type: ignore

            account_id = get_account_id_from(access_key) or account_id
        except Exception:
            pass
        return account_id

    def create_endpoint_config(self, environ, start_response, region):
        raw = read_body(environ) or b"{}"
        body = json.loads(raw)
        account_id = self.sm_account(environ)
        name = body.get("EndpointConfigName", "")
        arn = f"arn:aws:sagemaker:{region}:{account_id}:endpoint-config/{name.lower()}"
        from moto.sagemaker.models import sagemaker_backends

        backend = sagemaker_backends[account_id][region]
        if (account_id, region, name) in self.sm_configs or name in backend.endpoint_configs:
            return json_error(
                400,
                "ValidationException",
                f"Cannot create already existing endpoint configuration \"{arn}\".",
            )(environ, start_response)
        if body.get("KmsKeyId"):
            for v in body.get("ProductionVariants", []) + body.get("ShadowProductionVariants", []):
                t = v.get("InstanceType") or ""
                if any(t.startswith(prefix + ".") for prefix in self.refuse_kms_for):
                    return json_error(
                        400,
                        "ValidationException",
                        f"KmsKeyId is not supported for instance type {t}, which has local instance storage.",
                    )(environ, start_response)
        # moto creates it too (UpdateEndpoint and the endpoints need it), from the same body.
        environ["wsgi.input"] = io.BytesIO(raw)
        environ["CONTENT_LENGTH"] = str(len(raw))
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers

        answer = b"".join(self.app(environ, capture))
        if captured.get("status", "500").startswith("200"):
            stored = {k: v for k, v in body.items() if k != "Tags"}
            stored["EndpointConfigArn"] = arn
            stored["CreationTime"] = time.time()
            self.sm_configs[(account_id, region, name)] = stored
        start_response(captured["status"], captured["headers"])
        return [answer]

    def sagemaker(self, environ, start_response, region):
        target = environ.get("HTTP_X_AMZ_TARGET")
        if target == "SageMaker.CreateEndpointConfig":
            return lambda e, sr: self.create_endpoint_config(e, sr, region)
        if target == "SageMaker.DescribeEndpointConfig":
            raw = read_body(environ) or b"{}"
            environ["wsgi.input"] = io.BytesIO(raw)
            environ["CONTENT_LENGTH"] = str(len(raw))
            name = json.loads(raw).get("EndpointConfigName", "")
            stored = self.sm_configs.get((self.sm_account(environ), region, name))
            if stored is not None:
                return Response(json.dumps(stored), status=200, content_type="application/x-amz-json-1.1")
            return None
        if target == "SageMaker.DeleteEndpointConfig":
            # As SageMaker: a config may be deleted while an endpoint still runs it.
            raw = read_body(environ) or b"{}"
            environ["wsgi.input"] = io.BytesIO(raw)
            environ["CONTENT_LENGTH"] = str(len(raw))
            name = json.loads(raw).get("EndpointConfigName", "")
            self.sm_configs.pop((self.sm_account(environ), region, name), None)
            return None
        if target == "SageMaker.DescribeEndpoint" and self.pending_updates:
            name = json.loads(read_body(environ) or b"{}").get("EndpointName")
            pending = self.pending_updates.get(name)
            if pending is not None:
                pending[0] -= 1
                if pending[0] <= 0:
                    del self.pending_updates[name]
                    pending[1]()
            return None
        if target != "SageMaker.UpdateEndpoint":
            return None
        from moto.sagemaker.models import sagemaker_backends

        body = json.loads(read_body(environ) or b"{}")
        self.sm_updates.append(body)
        account_id = self.sm_account(environ)
        backend = sagemaker_backends[account_id][region]
        name = body.get("EndpointName")
        config_name = body.get("EndpointConfigName")
        endpoint = backend.endpoints.get(name)
        if endpoint is None:
            return json_error(400, "ValidationException", f"Could not find endpoint \"{name}\".")
        config = backend.endpoint_configs.get(config_name)
        if config is None:
            return json_error(
                400, "ValidationException", f"Could not find endpoint configuration \"{config_name}\"."
            )
        if endpoint.endpoint_status != "InService":
            return json_error(
                400,
                "ValidationException",
                f"Cannot update in-progress endpoint \"{endpoint.arn}\".",
            )
        endpoint.endpoint_status = "Updating"
        endpoint.last_modified_time = time.strftime("%Y-%m-%dT%H:%M:%S")

        retain = bool(body.get("RetainAllVariantProperties"))
        before = {v.get("VariantName"): v for v in (endpoint.production_variants or [])}

        def finish():
            endpoint.endpoint_config_name = config_name
            variants = endpoint._process_production_variants(config.production_variants)
            if retain:
                kept = ("CurrentWeight", "DesiredWeight", "CurrentInstanceCount", "DesiredInstanceCount")
                for v in variants:
                    old = before.get(v.get("VariantName"))
                    for k in kept:
                        if old is not None and k in old:
                            v[k] = old[k]
            endpoint.production_variants = variants
            endpoint.data_capture_config = config.data_capture_config
            endpoint.endpoint_status = "InService"

        if self.update_polls is not None:
            self.pending_updates[name] = [self.update_polls, finish]
        else:
            threading.Timer(self.update_seconds, finish).start()
        return Response(
            json.dumps({"EndpointArn": endpoint.arn}),
            status=200,
            content_type="application/x-amz-json-1.1",
        )


def watch_parent(pid):
    """Exit once `pid` is gone, so that a test binary never leaves a server behind."""

    def loop():
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:
                pass
            time.sleep(0.5)

    threading.Thread(target=loop, daemon=True).start()


def keep_cloudfront_origin_access():
    """Behaviour 16: moto's answers are serialised from the model's attributes, named after
    the API's members; the origin model sets neither of these."""
    from moto.cloudfront import models as cf

    plain_init = cf.Origin.__init__

    def init(self, origin):
        plain_init(self, origin)
        oai = (origin.get("S3OriginConfig") or {}).get("OriginAccessIdentity")
        if "S3OriginConfig" in origin:
            self.s3_origin_config = {"OriginAccessIdentity": oai or ""}
        self.origin_access_control_id = origin.get("OriginAccessControlId") or ""

    cf.Origin.__init__ = init


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--port-file", help="write the chosen port here once listening")
    parser.add_argument("--plain", action="store_true", help="run moto without the overlay")
    parser.add_argument("--parent-pid", type=int, help="exit when this process is gone")
    args = parser.parse_args(argv)
    if args.parent_pid:
        watch_parent(args.parent_pid)

    app = DomainDispatcherApplication(create_backend_app)
    if not args.plain:
        app = Overlay(app)
        keep_cloudfront_origin_access()

    import socket

    port = args.port
    if port == 0:
        with socket.socket() as s:
            s.bind((args.host, 0))
            port = s.getsockname()[1]
    os.environ["MOTO_PORT"] = str(port)
    if args.port_file:
        # Written just before the bind; readers still poll the port until it answers.
        with open(args.port_file + ".tmp", "w") as f:
            f.write(str(port))
        os.replace(args.port_file + ".tmp", args.port_file)
    print(f"moto{'' if args.plain else ' overlay'} on http://{args.host}:{port}", file=sys.stderr)
    run_simple(args.host, port, app, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()

"""Behaviour 20 of the moto overlay: S3 Batch Operations jobs (S3 Control CreateJob,
DescribeJob, ListJobs, UpdateJobStatus), which moto 5.2.5 does not implement, executed for
real over moto's S3 objects.

What AWS documents and this follows (Amazon S3 user guide, "S3 Batch Operations"; S3 Control
API reference for CreateJob, DescribeJob, ListJobs, UpdateJobStatus, JobReport):
- A job reads its manifest (CSV, `S3BatchOperations_CSV_20180820`: `bucket,key[,versionId]`
  per line, keys URL-encoded) from the object the request names, whose ETag must be given and
  must match ("Manifest ETag" in JobManifestLocation).
- Statuses: New → Preparing → (Suspended while ConfirmationRequired, until UpdateJobStatus
  Ready) → Ready → Active → Complete; UpdateJobStatus Cancelled → Cancelling → Cancelled.
  A job whose every task failed, or whose manifest cannot be read, ends Failed with
  FailureReasons.
- `ClientRequestToken` makes CreateJob idempotent: the same token answers the same JobId.
- Operations: `S3UpdateObjectEncryption` (SSE-KMS key ARN; refused for unencrypted and SSE-C
  objects, as UpdateObjectEncryption itself is) and `S3PutObjectCopy` (copy to
  `TargetResource` under the same key, `SSEAwsKmsKeyId`, `BucketKeyEnabled`, `StorageClass`,
  `MetadataDirective`; `UnModifiedSinceConstraint` fails the task with 412 when the object
  was modified after it). A task of a missing object fails with 404 NoSuchKey, a KMS problem
  with the KMS error code.
- The completion report (JobReport, `Report_CSV_20180820`) goes to
  `PREFIX/job-JOBID/manifest.json` and `PREFIX/job-JOBID/results/NAME.csv`: the manifest
  lists one results file per task status (`TaskExecutionStatus` succeeded / failed, Bucket,
  MD5Checksum, Key), with `ReportSchema` "Bucket, Key, VersionId, TaskStatus, ErrorCode,
  HTTPStatusCode, ResultMessage"; CSV rows carry the manifest's bucket and (URL-encoded) key.
  `ReportScope FailedTasksOnly` writes the failed tasks only.

Tasks run on a background thread, one every `task_seconds` (POST /_rekey/batch
{"task_seconds": S}, or {"task_seconds": S, "bucket": B} for jobs over bucket B alone;
default 0.002), so that a test can watch a job Active.
"""

import csv
import hashlib
import io
import json
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, quote, unquote_plus

from werkzeug.wrappers import Response

NS = "http://awss3control.amazonaws.com/doc/2018-08-20/"
REPORT_SCHEMA = "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage"


def now_iso():
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def local(tag):
    return tag.rsplit("}", 1)[-1]


def child(node, *names):
    for name in names:
        if node is None:
            return None
        node = next((c for c in node if local(c.tag) == name), None)
    return node


def text(node, *names, default=None):
    n = child(node, *names)
    return n.text.strip() if n is not None and n.text is not None else default


def members(node, *names):
    n = child(node, *names)
    return [] if n is None else [(c.text or "").strip() for c in n]


def control_error(status, code, message):
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<ErrorResponse><Error><Code>{code}</Code><Message>{message}</Message></Error>"
        "<RequestId>overlay</RequestId></ErrorResponse>"
    )
    return Response(body, status=status, content_type="application/xml")


def xml_answer(root, inner):
    body = f'<?xml version="1.0" encoding="UTF-8"?><{root} xmlns="{NS}">{inner}</{root}>'
    return Response(body, status=200, content_type="application/xml")


def esc(value):
    from xml.sax.saxutils import escape

    return escape(str(value))


class BatchJobs:
    def __init__(self, overlay_helpers):
        # (s3 backend for a bucket, lookup_object, resolve_kms_key, KeyProblem)
        self.h = overlay_helpers
        self.lock = threading.Lock()
        self.jobs = {}
        self.tokens = {}
        self.task_seconds = 0.002
        # Bucket -> seconds per task for jobs over that bucket (a test's own pace, so that
        # tests sharing the emulator do not slow each other).
        self.bucket_seconds = {}

    def reset(self):
        with self.lock:
            self.jobs.clear()
            self.tokens.clear()
            self.task_seconds = 0.002
            self.bucket_seconds.clear()

    def configure(self, conf):
        if "task_seconds" in conf and conf.get("bucket"):
            self.bucket_seconds[conf["bucket"]] = float(conf["task_seconds"])
        elif "task_seconds" in conf:
            self.task_seconds = float(conf["task_seconds"])

    # ---- requests ------------------------------------------------------------------
    def handle(self, environ, body):
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "")
        account = environ.get("HTTP_X_AMZ_ACCOUNT_ID", "")
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        parts = path.rstrip("/").split("/")  # ['', 'v20180820', 'jobs', id?, 'status'?]
        if len(parts) == 3 and method == "POST":
            return self.create(account, body)
        if len(parts) == 3 and method == "GET":
            return self.list(account, query)
        if len(parts) == 4 and method == "GET":
            return self.describe(account, parts[3])
        if len(parts) == 5 and parts[4] == "status" and method == "POST":
            return self.update_status(account, parts[3], query)
        return control_error(400, "InvalidRequest", f"unsupported batch request {method} {path}")

    def create(self, account, body):
        try:
            req = ET.fromstring(body)
        except ET.ParseError:
            return control_error(400, "MalformedXML", "The XML you provided was not well-formed.")
        token = text(req, "ClientRequestToken")
        if not token:
            return control_error(400, "InvalidRequest", "ClientRequestToken is required.")
        with self.lock:
            known = self.tokens.get((account, token))
            if known is not None:
                return xml_answer("CreateJobResult", f"<JobId>{known}</JobId>")
        op = child(req, "Operation")
        operation = None
        params = {}
        if child(op, "S3UpdateObjectEncryption") is not None:
            operation = "S3UpdateObjectEncryption"
            sse = child(op, "S3UpdateObjectEncryption", "ObjectEncryption", "SSE-KMS")
            params = {
                "KMSKeyArn": text(sse, "KMSKeyArn"),
                "BucketKeyEnabled": (text(sse, "BucketKeyEnabled", default="false") or "").lower() == "true",
            }
            if not params["KMSKeyArn"]:
                return control_error(400, "InvalidRequest", "KMSKeyArn is required.")
        elif child(op, "S3PutObjectCopy") is not None:
            operation = "S3PutObjectCopy"
            c = child(op, "S3PutObjectCopy")
            params = {
                "TargetResource": text(c, "TargetResource"),
                "SSEAwsKmsKeyId": text(c, "SSEAwsKmsKeyId"),
                "BucketKeyEnabled": (text(c, "BucketKeyEnabled", default="false") or "").lower() == "true",
                "StorageClass": text(c, "StorageClass"),
                "MetadataDirective": text(c, "MetadataDirective", default="COPY"),
                "UnModifiedSinceConstraint": text(c, "UnModifiedSinceConstraint"),
                "ChecksumAlgorithm": text(c, "ChecksumAlgorithm"),
            }
        else:
            return control_error(400, "InvalidRequest", "this overlay runs S3UpdateObjectEncryption and S3PutObjectCopy jobs only")
        manifest = child(req, "Manifest")
        report = child(req, "Report")
        job_id = str(uuid.uuid4())
        job = {
            "JobId": job_id,
            "Account": account,
            "Description": text(req, "Description", default=""),
            "Priority": int(text(req, "Priority", default="10")),
            "RoleArn": text(req, "RoleArn", default=""),
            "ConfirmationRequired": (text(req, "ConfirmationRequired", default="false") or "").lower() == "true",
            "Operation": operation,
            "Params": params,
            "Manifest": {
                "Format": text(manifest, "Spec", "Format", default=""),
                "Fields": members(manifest, "Spec", "Fields"),
                "ObjectArn": text(manifest, "Location", "ObjectArn", default=""),
                "ObjectVersionId": text(manifest, "Location", "ObjectVersionId"),
                "ETag": text(manifest, "Location", "ETag", default=""),
            },
            "Report": {
                "Bucket": text(report, "Bucket", default=""),
                "Format": text(report, "Format", default="Report_CSV_20180820"),
                "Enabled": (text(report, "Enabled", default="false") or "").lower() == "true",
                "Prefix": text(report, "Prefix", default=""),
                "ReportScope": text(report, "ReportScope", default="AllTasks"),
            },
            "Status": "New",
            "CreationTime": now_iso(),
            "TerminationDate": None,
            "Total": 0,
            "Succeeded": 0,
            "Failed": 0,
            "FailureReasons": [],
            "StatusUpdateReason": None,
            "Ready": threading.Event(),
            "Cancel": threading.Event(),
        }
        with self.lock:
            self.jobs[job_id] = job
            self.tokens[(account, token)] = job_id
        threading.Thread(target=self.run, args=(job,), daemon=True).start()
        return xml_answer("CreateJobResult", f"<JobId>{job_id}</JobId>")

    def describe(self, account, job_id):
        job = self.jobs.get(job_id)
        if job is None or job["Account"] != account:
            return control_error(404, "NoSuchJob", "The specified job does not exist.")
        return xml_answer("DescribeJobResult", f"<Job>{self.descriptor(job)}</Job>")

    def list(self, account, query):
        statuses = set(query.get("jobStatuses", []))
        with self.lock:
            jobs = [j for j in self.jobs.values() if j["Account"] == account]
        jobs = [j for j in jobs if not statuses or j["Status"] in statuses]
        jobs.sort(key=lambda j: j["CreationTime"], reverse=True)
        start = int(query.get("nextToken", ["0"])[0] or 0)
        size = int(query.get("maxResults", ["1000"])[0] or 1000)
        page = jobs[start : start + size]
        inner = "<Jobs>" + "".join(
            "<member>"
            f"<JobId>{j['JobId']}</JobId><Description>{esc(j['Description'])}</Description>"
            f"<Operation>{j['Operation']}</Operation><Priority>{j['Priority']}</Priority>"
            f"<Status>{j['Status']}</Status><CreationTime>{j['CreationTime']}</CreationTime>"
            + (f"<TerminationDate>{j['TerminationDate']}</TerminationDate>" if j["TerminationDate"] else "")
            + f"<ProgressSummary>{self.progress(j)}</ProgressSummary></member>"
            for j in page
        ) + "</Jobs>"
        if start + size < len(jobs):
            inner += f"<NextToken>{start + size}</NextToken>"
        return xml_answer("ListJobsResult", inner)

    def update_status(self, account, job_id, query):
        job = self.jobs.get(job_id)
        if job is None or job["Account"] != account:
            return control_error(404, "NoSuchJob", "The specified job does not exist.")
        wanted = (query.get("requestedJobStatus") or [""])[0]
        reason = (query.get("statusUpdateReason") or [None])[0]
        with self.lock:
            status = job["Status"]
            if wanted == "Ready":
                if status != "Suspended":
                    return control_error(400, "JobStatusException", f"Job is in state {status} and cannot be made Ready.")
                job["Status"] = "Ready"
                job["Ready"].set()
            elif wanted == "Cancelled":
                if status in ("Complete", "Failed", "Cancelled"):
                    return control_error(400, "JobStatusException", f"Job is in state {status} and cannot be cancelled.")
                job["Status"] = "Cancelling"
                job["Cancel"].set()
                job["Ready"].set()
            else:
                return control_error(400, "InvalidRequest", "RequestedJobStatus must be Ready or Cancelled.")
            job["StatusUpdateReason"] = reason
            inner = f"<JobId>{job_id}</JobId><Status>{job['Status']}</Status>"
        return xml_answer("UpdateJobStatusResult", inner)

    # ---- answers -------------------------------------------------------------------
    def progress(self, j):
        return (
            f"<TotalNumberOfTasks>{j['Total']}</TotalNumberOfTasks>"
            f"<NumberOfTasksSucceeded>{j['Succeeded']}</NumberOfTasksSucceeded>"
            f"<NumberOfTasksFailed>{j['Failed']}</NumberOfTasksFailed>"
            "<Timers><ElapsedTimeInActiveSeconds>0</ElapsedTimeInActiveSeconds></Timers>"
        )

    def descriptor(self, j):
        p = j["Params"]
        if j["Operation"] == "S3UpdateObjectEncryption":
            op = (
                "<S3UpdateObjectEncryption><ObjectEncryption><SSE-KMS>"
                f"<KMSKeyArn>{esc(p['KMSKeyArn'])}</KMSKeyArn>"
                f"<BucketKeyEnabled>{str(p['BucketKeyEnabled']).lower()}</BucketKeyEnabled>"
                "</SSE-KMS></ObjectEncryption></S3UpdateObjectEncryption>"
            )
        else:
            fields = "".join(
                f"<{k}>{esc(v if not isinstance(v, bool) else str(v).lower())}</{k}>"
                for k, v in p.items()
                if v is not None
            )
            op = f"<S3PutObjectCopy>{fields}</S3PutObjectCopy>"
        m = j["Manifest"]
        fields = "".join(f"<member>{f}</member>" for f in m["Fields"])
        location = f"<ObjectArn>{esc(m['ObjectArn'])}</ObjectArn><ETag>{esc(m['ETag'])}</ETag>"
        if m["ObjectVersionId"]:
            location += f"<ObjectVersionId>{esc(m['ObjectVersionId'])}</ObjectVersionId>"
        r = j["Report"]
        report = (
            f"<Bucket>{esc(r['Bucket'])}</Bucket><Format>{r['Format']}</Format>"
            f"<Enabled>{str(r['Enabled']).lower()}</Enabled><Prefix>{esc(r['Prefix'])}</Prefix>"
            f"<ReportScope>{r['ReportScope']}</ReportScope>"
        )
        failures = "".join(
            f"<member><FailureCode>{esc(c)}</FailureCode><FailureReason>{esc(m_)}</FailureReason></member>"
            for c, m_ in j["FailureReasons"]
        )
        out = (
            f"<JobId>{j['JobId']}</JobId>"
            f"<ConfirmationRequired>{str(j['ConfirmationRequired']).lower()}</ConfirmationRequired>"
            f"<Description>{esc(j['Description'])}</Description>"
            f"<JobArn>arn:aws:s3:us-east-1:{j['Account']}:job/{j['JobId']}</JobArn>"
            f"<Status>{j['Status']}</Status>"
            f"<Manifest><Spec><Format>{m['Format']}</Format><Fields>{fields}</Fields></Spec>"
            f"<Location>{location}</Location></Manifest>"
            f"<Operation>{op}</Operation><Priority>{j['Priority']}</Priority>"
            f"<ProgressSummary>{self.progress(j)}</ProgressSummary>"
            f"<Report>{report}</Report><CreationTime>{j['CreationTime']}</CreationTime>"
            f"<RoleArn>{esc(j['RoleArn'])}</RoleArn>"
        )
        if failures:
            out += f"<FailureReasons>{failures}</FailureReasons>"
        if j["StatusUpdateReason"]:
            out += f"<StatusUpdateReason>{esc(j['StatusUpdateReason'])}</StatusUpdateReason>"
        if j["TerminationDate"]:
            out += f"<TerminationDate>{j['TerminationDate']}</TerminationDate>"
        return out

    # ---- execution -----------------------------------------------------------------
    def finish(self, job, status):
        with self.lock:
            job["Status"] = status
            job["TerminationDate"] = now_iso()

    def run(self, job):
        backend_for, lookup_object, resolve_kms_key, key_problem = self.h
        time.sleep(0.05)
        with self.lock:
            job["Status"] = "Preparing"
        m = job["Manifest"]
        arn = m["ObjectArn"]
        if not arn.startswith("arn:aws:s3:::") or "/" not in arn:
            job["FailureReasons"].append(("ManifestNotFound", f"manifest {arn} is not an object ARN"))
            return self.finish(job, "Failed")
        bucket, key = arn[len("arn:aws:s3:::") :].split("/", 1)
        backend = backend_for(bucket)
        obj = lookup_object(backend, bucket, key, m["ObjectVersionId"]) if backend else None
        if obj is None:
            job["FailureReasons"].append(("ManifestNotFound", f"Reading the manifest failed: {arn} was not found"))
            return self.finish(job, "Failed")
        if obj.etag.strip('"') != m["ETag"].strip('"'):
            job["FailureReasons"].append(("ManifestETagMismatch", "The ETag of the manifest does not match the ETag given"))
            return self.finish(job, "Failed")
        fields = m["Fields"]
        rows = []
        for rec in csv.reader(io.StringIO(obj.value.decode("utf-8"))):
            if not rec:
                continue
            row = dict(zip(fields, rec))
            rows.append((row.get("Bucket", ""), unquote_plus(row.get("Key", "")), row.get("VersionId") or None))
        with self.lock:
            job["Total"] = len(rows)
        if job["ConfirmationRequired"]:
            with self.lock:
                job["Status"] = "Suspended"
            job["Ready"].wait()
        else:
            with self.lock:
                job["Status"] = "Ready"
        if job["Cancel"].is_set():
            return self.finish(job, "Cancelled")
        with self.lock:
            job["Status"] = "Active"
        results = []
        for b, k, v in rows:
            if job["Cancel"].is_set():
                self.write_report(job, results)
                return self.finish(job, "Cancelled")
            time.sleep(self.bucket_seconds.get(b, self.task_seconds))
            code, status, message = self.task(job, b, k, v)
            results.append((b, k, v, code, status, message))
            with self.lock:
                if code is None:
                    job["Succeeded"] += 1
                else:
                    job["Failed"] += 1
        with self.lock:
            job["Status"] = "Completing"
        self.write_report(job, results)
        if rows and job["Failed"] == len(rows):
            job["FailureReasons"].append(("AllTasksFailed", "All tasks of the job failed"))
            return self.finish(job, "Failed")
        self.finish(job, "Complete")

    def task(self, job, bucket, key, version):
        """One task: (error code or None, HTTP status, result message)."""
        backend_for, lookup_object, resolve_kms_key, key_problem = self.h
        backend = backend_for(bucket)
        if backend is None:
            return ("NoSuchBucket", 404, "The specified bucket does not exist")
        obj = lookup_object(backend, bucket, key, version)
        if obj is None:
            return ("NoSuchKey", 404, "The specified key does not exist.")
        p = job["Params"]
        region = "us-east-1"
        try:
            if job["Operation"] == "S3UpdateObjectEncryption":
                if getattr(obj, "overlay_sse_c", None) is not None:
                    return ("InvalidRequest", 400, "UpdateObjectEncryption is not supported for SSE-C objects.")
                if not obj.encryption:
                    return ("InvalidRequest", 400, "UpdateObjectEncryption is not supported for unencrypted objects.")
                arn = resolve_kms_key(p["KMSKeyArn"], backend.account_id, region)
                obj.encryption = "aws:kms"
                obj.kms_key_id = arn
                obj.bucket_key_enabled = "true" if p["BucketKeyEnabled"] else None
                return (None, 200, "")
            # S3PutObjectCopy
            if getattr(obj, "overlay_sse_c", None) is not None:
                return ("InvalidRequest", 400, "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object.")
            since = p.get("UnModifiedSinceConstraint")
            if since:
                import datetime

                limit = datetime.datetime.fromisoformat(since.replace("Z", "+00:00"))
                modified = obj.last_modified
                if modified.tzinfo is None:
                    modified = modified.replace(tzinfo=datetime.timezone.utc)
                if modified > limit:
                    return ("PreconditionFailed", 412, "At least one of the pre-conditions you specified did not hold")
            target = (p.get("TargetResource") or "").split(":::", 1)[-1] or bucket
            kms = p.get("SSEAwsKmsKeyId")
            key_arn = resolve_kms_key(kms, backend.account_id, region) if kms else None
            backend.copy_object(
                obj,
                target,
                key,
                storage=p.get("StorageClass") or obj.storage_class,
                encryption="aws:kms" if key_arn else "AES256",
                kms_key_id=key_arn,
                bucket_key_enabled="true" if p.get("BucketKeyEnabled") else None,
                mdirective=p.get("MetadataDirective") or "COPY",
            )
            return (None, 200, "")
        except key_problem as problem:
            return (problem.code, 400, problem.message)

    def write_report(self, job, results):
        r = job["Report"]
        if not r["Enabled"]:
            return
        backend_for = self.h[0]
        bucket = r["Bucket"].split(":::", 1)[-1]
        backend = backend_for(bucket)
        if backend is None:
            job["FailureReasons"].append(("ReportNotWritten", f"report bucket {bucket} not found"))
            return
        prefix = (r["Prefix"] or "").strip("/")
        base = f"{prefix}/job-{job['JobId']}" if prefix else f"job-{job['JobId']}"
        entries = []
        for status in ("succeeded", "failed"):
            if status == "succeeded" and r["ReportScope"] == "FailedTasksOnly":
                continue
            rows = [x for x in results if (x[3] is None) == (status == "succeeded")]
            if not rows:
                continue
            out = io.StringIO()
            w = csv.writer(out, lineterminator="\n")
            for b, k, v, code, http, message in rows:
                w.writerow([b, quote(k, safe="/"), v or "", status, code or "", http, message or "Successful"])
            data = out.getvalue().encode()
            name = f"{base}/results/{uuid.uuid4().hex}.csv"
            backend.put_object(bucket, name, data)
            entries.append({
                "TaskExecutionStatus": status,
                "Bucket": bucket,
                "MD5Checksum": hashlib.md5(data).hexdigest(),
                "Key": name,
            })
        manifest = {
            "Format": "Report_CSV_20180820",
            "ReportCreationDate": now_iso(),
            "Results": entries,
            "ReportSchema": REPORT_SCHEMA,
        }
        backend.put_object(bucket, f"{base}/manifest.json", json.dumps(manifest).encode())

"""Storage batch operations (storagebatchoperations.googleapis.com v1) and the Storage
Intelligence configuration (Storage Control API v2) for the GCS test server, the subset rekey
uses (docs/batch.md, "Cloud Storage").

Jobs (https://cloud.google.com/storage/docs/storagebatchoperations/reference/rest/v1/projects.locations.jobs):
- create: POST /v1/projects/P/locations/global/jobs?jobId=ID[&requestId=UUID], body a Job with
  `bucketList.buckets[0].{bucket, manifest.manifestLocation}` and `rewriteObject.kmsKey`;
  answers a long-running Operation (`name`, `done: false`, `metadata.job`). A jobId that
  exists is 409 ALREADY_EXISTS. Refused (400 FAILED_PRECONDITION) unless Storage
  Intelligence is configured for the project ("Configure Storage Intelligence ... on the
  bucket where you want to run the job", create-manage-batch-operation-jobs).
- get: GET .../jobs/ID: `name`, `description`, `state` (QUEUED, RUNNING, SUCCEEDED, CANCELED,
  FAILED), `counters.{totalObjectCount, succeededObjectCount, failedObjectCount}` (int64 as
  strings, as the JSON mapping of proto3 gives them), `errorSummaries[{errorCode, errorCount,
  errorLogEntries[{objectUri, errorDetails}]}]` (at most 5 entries per code, as the
  ErrorLogEntry reference says), `createTime`, `completeTime`.
- list: GET .../jobs (pageToken, pageSize, filter ignored).
- cancel: POST .../jobs/ID:cancel (a job already over: 400 FAILED_PRECONDITION).

Execution: a thread per job reads the manifest (`gs://B/NAME`, a CSV whose rows are bucket,
name[, generation]; a first row `bucket,name,generation` is a header; an empty or absent
generation is the live object, per the Manifest reference), then rewrites each object in
place onto the kmsKey: same bytes, metadata and extra fields; the bucket's default storage
class (a rewrite that names no class takes it, as the JSON API's rewrite does). A missing
object fails its task NOT_FOUND; a held object FAILED_PRECONDITION; a customer-supplied
key FAILED_PRECONDITION; a key the Cloud KMS subset does not know, or whose primary version
is disabled, PERMISSION_DENIED. Tasks run one every `task_seconds` (POST /_rekey/batch
{"task_seconds": S}, or {"task_seconds": S, "bucket": B} for jobs over bucket B alone).

Storage Intelligence (https://cloud.google.com/storage/docs/storage-intelligence): GET and
PATCH /v2/projects/P/locations/global/storageIntelligenceConfig; `editionConfig` INHERIT
(default), DISABLED, STANDARD or TRIAL; `effectiveIntelligenceConfig.effectiveEdition` is
STANDARD for STANDARD or TRIAL, else NONE.
"""

import csv
import io
import json
import re
import threading
import time
from urllib.parse import unquote

TASK_SECONDS = {"value": 0.002, "buckets": {}}
MAX_ENTRIES = 5


def iso():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Batch:
    def __init__(self, state, lock, helpers):
        self.state = state
        self.lock = lock
        # (bucket lookup, live(), put_object(), held(), HttpError, EXTRA_FIELDS)
        self.h = helpers

    def reset(self):
        self.state["jobs"] = {}
        self.state["intelligence"] = {}
        TASK_SECONDS["value"] = 0.002
        TASK_SECONDS["buckets"] = {}

    def bucket_of(self, path, body):
        """The bucket a batch operations request is about (for the test hooks' scopes)."""
        m = re.fullmatch(r"/v1/projects/([^/]+)/locations/global/jobs(?:/([^/:]+))?(:cancel)?", path)
        if not m:
            return None
        if m.group(2):
            with self.lock:
                job = self.state["jobs"].get(f"projects/{unquote(m.group(1))}/locations/global/jobs/{m.group(2)}")
            return job["bucket"] if job else None
        try:
            return json.loads(body or b"{}")["bucketList"]["buckets"][0]["bucket"]
        except (ValueError, KeyError, IndexError, TypeError):
            return None

    def handle(self, method, path, q, body):
        """(code, doc) for a batch or intelligence path, or None."""
        if path == "/_rekey/batch" and method == "POST":
            conf = json.loads(body or b"{}")
            if conf.get("bucket"):
                TASK_SECONDS["buckets"][conf["bucket"]] = float(conf["task_seconds"])
            else:
                TASK_SECONDS["value"] = float(conf.get("task_seconds", TASK_SECONDS["value"]))
            return 200, {}
        m = re.fullmatch(r"/v2/projects/([^/]+)/locations/global/storageIntelligenceConfig", path)
        if m:
            return self.intelligence(method, unquote(m.group(1)), body)
        m = re.fullmatch(r"/v1/projects/([^/]+)/locations/global/jobs(?:/([^/:]+))?(:cancel)?", path)
        if not m:
            return None
        project, job_id, cancel = unquote(m.group(1)), m.group(2), m.group(3)
        name = f"projects/{project}/locations/global/jobs/{job_id}" if job_id else None
        with self.lock:
            if job_id is None and method == "POST":
                return self.create(project, q, body)
            if job_id is None and method == "GET":
                jobs = [self.view(j) for n, j in sorted(self.state["jobs"].items())
                        if n.startswith(f"projects/{project}/")]
                return 200, {"jobs": jobs}
            job = self.state["jobs"].get(name)
            if job is None:
                return 404, error(404, "NOT_FOUND", f"job {name} not found")
            if cancel and method == "POST":
                if job["state"] in ("SUCCEEDED", "FAILED", "CANCELED"):
                    return 400, error(400, "FAILED_PRECONDITION", f"job {name} is already {job['state']}")
                job["cancel"].set()
                return 200, {}
            if method == "GET":
                return 200, self.view(job)
        return 404, error(404, "NOT_FOUND", f"no batch operations route for {method} {path}")

    def intelligence(self, method, project, body):
        with self.lock:
            conf = self.state["intelligence"].setdefault(project, {"editionConfig": "INHERIT"})
            if method == "PATCH":
                patch = json.loads(body or b"{}")
                if "editionConfig" in patch:
                    conf["editionConfig"] = patch["editionConfig"]
            elif method != "GET":
                return 405, error(405, "INVALID_ARGUMENT", "method not allowed")
            effective = "STANDARD" if conf["editionConfig"] in ("STANDARD", "TRIAL") else "NONE"
            return 200, {
                "name": f"projects/{project}/locations/global/storageIntelligenceConfig",
                "editionConfig": conf["editionConfig"],
                "effectiveIntelligenceConfig": {"effectiveEdition": effective},
            }

    def create(self, project, q, body):
        job_id = (q.get("jobId") or [None])[0]
        if not job_id or not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,126}[a-z0-9])?", job_id):
            return 400, error(400, "INVALID_ARGUMENT", "jobId is required: up to 128 characters of a DNS name")
        conf = self.state["intelligence"].get(project, {})
        if conf.get("editionConfig") not in ("STANDARD", "TRIAL"):
            return 400, error(400, "FAILED_PRECONDITION", "Storage Intelligence is not configured for this project")
        name = f"projects/{project}/locations/global/jobs/{job_id}"
        if name in self.state["jobs"]:
            return 409, error(409, "ALREADY_EXISTS", f"job {name} already exists")
        spec = json.loads(body or b"{}")
        buckets = (spec.get("bucketList") or {}).get("buckets") or []
        kms_key = (spec.get("rewriteObject") or {}).get("kmsKey")
        if len(buckets) != 1 or not (buckets[0].get("manifest") or {}).get("manifestLocation") or not kms_key:
            return 400, error(400, "INVALID_ARGUMENT", "one bucket with a manifest, and rewriteObject.kmsKey, are required")
        job = {
            "name": name, "description": spec.get("description", ""), "state": "QUEUED",
            "bucket": buckets[0]["bucket"], "manifest": buckets[0]["manifest"]["manifestLocation"],
            "kmsKey": kms_key, "total": 0, "succeeded": 0, "failed": 0, "errors": {},
            "createTime": iso(), "completeTime": None, "cancel": threading.Event(),
        }
        self.state["jobs"][name] = job
        threading.Thread(target=self.run, args=(job,), daemon=True).start()
        return 200, {"name": f"projects/{project}/locations/global/operations/{job_id}", "done": False,
                     "metadata": {"@type": "type.googleapis.com/google.cloud.storagebatchoperations.v1.OperationMetadata",
                                  "job": self.view(job)}}

    def view(self, j):
        doc = {
            "name": j["name"], "description": j["description"], "state": j["state"],
            "bucketList": {"buckets": [{"bucket": j["bucket"], "manifest": {"manifestLocation": j["manifest"]}}]},
            "rewriteObject": {"kmsKey": j["kmsKey"]},
            "counters": {"totalObjectCount": str(j["total"]), "succeededObjectCount": str(j["succeeded"]),
                         "failedObjectCount": str(j["failed"])},
            "createTime": j["createTime"],
        }
        if j["errors"]:
            doc["errorSummaries"] = [
                {"errorCode": code, "errorCount": str(e["count"]), "errorLogEntries": e["entries"]}
                for code, e in sorted(j["errors"].items())
            ]
        if j["completeTime"]:
            doc["completeTime"] = j["completeTime"]
        return doc

    def finish(self, job, state):
        with self.lock:
            job["state"] = state
            job["completeTime"] = iso()

    def run(self, job):
        bucket_of, live, put_object, held, HttpError, extra_fields = self.h
        time.sleep(0.05)
        loc = job["manifest"]
        m = re.fullmatch(r"gs://([^/]+)/(.+)", loc)
        with self.lock:
            job["state"] = "RUNNING"
            b = self.state["buckets"].get(m.group(1)) if m else None
            obj = live(b, m.group(2)) if b is not None else None
            data = obj["data"] if obj is not None else None
        if data is None:
            self.fail(job, "NOT_FOUND", loc, f"the manifest {loc} was not found")
            return self.finish(job, "FAILED")
        rows = []
        for rec in csv.reader(io.StringIO(data.decode("utf-8"))):
            if not rec or rec[:2] == ["bucket", "name"]:
                continue
            rows.append((rec[0], rec[1], rec[2] if len(rec) > 2 and rec[2] else None))
        with self.lock:
            job["total"] = len(rows)
        for bucket, name, generation in rows:
            if job["cancel"].is_set():
                return self.finish(job, "CANCELED")
            time.sleep(TASK_SECONDS["buckets"].get(bucket, TASK_SECONDS["value"]))
            with self.lock:
                problem = self.task(job, bucket, name, generation)
                if problem is None:
                    job["succeeded"] += 1
                else:
                    job["failed"] += 1
                    self.fail(job, problem[0], f"gs://{bucket}/{name}", problem[1])
        self.finish(job, "CANCELED" if job["cancel"].is_set() else "SUCCEEDED")

    def fail(self, job, code, uri, detail):
        with self.lock:
            e = job["errors"].setdefault(code, {"count": 0, "entries": []})
            e["count"] += 1
            if len(e["entries"]) < MAX_ENTRIES:
                e["entries"].append({"objectUri": uri, "errorDetails": [detail]})

    def task(self, job, bucket, name, generation):
        """Rewrite one object onto the job's key: None, or (error code, detail)."""
        bucket_of, live, put_object, held, HttpError, extra_fields = self.h
        b = self.state["buckets"].get(bucket)
        if b is None:
            return "NOT_FOUND", f"bucket {bucket} not found"
        src = live(b, name)
        if generation is not None:
            src = next((o for o in b["objects"].get(name, []) if str(o["generation"]) == generation), None)
        if src is None:
            return "NOT_FOUND", f"object gs://{bucket}/{name} not found"
        if src.get("csek"):
            return "FAILED_PRECONDITION", "the object is encrypted with a customer-supplied key"
        key = job["kmsKey"]
        k = self.state["kms"].get(key)
        if k is None or k.get("state") != "ENABLED":
            return "PERMISSION_DENIED", f"Cloud KMS key {key} cannot be used (missing or disabled)"
        if held(src):
            return "FAILED_PRECONDITION", f"the object is under {held(src)}"
        try:
            obj = put_object(b, name, src["data"], src["contentType"], key, None,
                             src.get("metadata"), b.get("storageClass", "STANDARD"))
        except HttpError as e:
            return "FAILED_PRECONDITION", e.message
        for field in extra_fields:
            if src.get(field) is not None:
                obj[field] = src[field]
        return None


def error(http, status, message):
    return {"error": {"code": http, "message": message, "status": status}}

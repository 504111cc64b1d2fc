"""A small Google Cloud Storage JSON-API server for rekey's tests, covering the subset rekey
uses with GCS's documented semantics, CMEK included (which no public emulator models).

Run: python gcs_test_server.py --port 0 --port-file F [--parent-pid PID]
Point clients at it with STORAGE_EMULATOR_HOST=http://127.0.0.1:PORT.

Covered (each pinned by tests/integration/gcs.rs):
- buckets: list (project, pageToken, maxResults), insert, get, patch. A patch changes only the
  fields it sends (labels merge key by key, a null removes), bumps metageneration, honours
  ifMetagenerationMatch. `encryption.defaultKmsKeyName` is the bucket default key.
- objects: list (prefix, pageToken, maxResults, versions, fields), get (generation), media
  download, media upload (name, kmsKeyName, ifGenerationMatch, customer-supplied keys via
  x-goog-encryption-* headers), metadata patch. A new object takes the bucket default key when
  it names none. `kmsKeyName` is reported with its `/cryptoKeyVersions/1` suffix; customer-
  supplied keys as `customerEncryption`. Versioned buckets keep noncurrent generations.
  Event-based and temporary holds (set by an object patch) and a bucket `retentionPolicy`
  (`retentionExpirationTime` on each object) refuse to replace the live object: 403.
- rewriteTo with destinationKmsKeyName, sourceGeneration, ifGenerationMatch,
  ifSourceGenerationMatch (412 conditionNotMet), and rewriteToken continuation under
  maxBytesRewrittenPerCall. Without destinationKmsKeyName the destination takes the bucket
  default key, or Google-managed encryption when the bucket has none. Metadata in the request
  body overrides the source's; without a `storageClass` there, the new generation takes the
  destination bucket's default storage class.
- the project's Cloud Storage service agent (GET /storage/v1/projects/P/serviceAccount:
  `service-NUMBER@gs-project-accounts.iam.gserviceaccount.com`, NUMBER derived from P).
- a Cloud KMS subset at /v1/ (the REST API's paths): cryptoKeys.create (POST
  .../keyRings/R/cryptoKeys?cryptoKeyId=K, 409 if it exists), cryptoKeys.get (404 if absent;
  `purpose`, `primary.name`, `primary.state`), cryptoKeyVersions.patch of `state`
  (updateMask=state: ENABLED / DISABLED), and getIamPolicy / setIamPolicy on a key or key ring
  (bindings with optional `condition`, an etag). Nothing checks that a key exists when a
  bucket or object names it (Cloud Storage does; rekey's preflight checks it before then).
- storage batch operations jobs (rewriteObject with a KMS key) and the Storage Intelligence
  configuration: scripts/gcs_batch.py.
- test endpoints: POST /_rekey/reset; POST /_rekey/batch (the pace of batch jobs' tasks); the
  interleaving hooks of scripts/fault_hook.py, scoped by bucket-name prefix.
"""

import argparse
import base64
import hashlib
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlparse

from fault_hook import Hooks
from gcs_batch import Batch

HOOKS = Hooks()

LOCK = threading.RLock()
STATE = {"buckets": {}, "generation": int(time.time() * 1_000_000), "kms": {}, "policies": {}}


def reset():
    with LOCK:
        STATE["buckets"] = {}
        STATE["kms"] = {}
        STATE["policies"] = {}
        BATCH.reset()


def project_number(project):
    return int(hashlib.sha256(project.encode()).hexdigest()[:10], 16) % 10**12


def kms_key_resource(name, k):
    return {"name": name, "purpose": k["purpose"],
            "primary": {"name": f"{name}/cryptoKeyVersions/1", "state": k["state"]}}


def next_generation():
    STATE["generation"] += 1
    return STATE["generation"]


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


class HttpError(Exception):
    def __init__(self, code, message, reason="invalid"):
        super().__init__(message)
        self.code, self.message, self.reason = code, message, reason


def version_of(key):
    return f"{key}/cryptoKeyVersions/1" if key else None


def object_resource(bucket, obj):
    r = {
        "kind": "storage#object",
        "id": f"{bucket}/{obj['name']}/{obj['generation']}",
        "name": obj["name"],
        "bucket": bucket,
        "generation": str(obj["generation"]),
        "metageneration": str(obj["metageneration"]),
        "contentType": obj["contentType"],
        "size": str(len(obj["data"])),
        "md5Hash": base64.b64encode(hashlib.md5(obj["data"]).digest()).decode(),
        "storageClass": obj["storageClass"],
        "timeCreated": obj["timeCreated"],
        "updated": obj["updated"],
    }
    if obj.get("metadata"):
        r["metadata"] = obj["metadata"]
    if obj.get("kmsKeyName"):
        r["kmsKeyName"] = version_of(obj["kmsKeyName"])
    if obj.get("csek"):
        r["customerEncryption"] = {"encryptionAlgorithm": "AES256", "keySha256": obj["csek"]}
    if obj.get("timeDeleted"):
        r["timeDeleted"] = obj["timeDeleted"]
    for hold in ("eventBasedHold", "temporaryHold"):
        if obj.get(hold):
            r[hold] = True
    for field in EXTRA_FIELDS:
        if obj.get(field) is not None:
            r[field] = obj[field]
    if obj.get("retentionExpirationTime"):
        r["retentionExpirationTime"] = obj["retentionExpirationTime"]
    return r


# Writable metadata the server keeps as given (a patch sets them, a rewrite carries them).
EXTRA_FIELDS = ("cacheControl", "contentEncoding", "contentDisposition", "contentLanguage", "customTime")


def held(obj):
    """Why a live object cannot be replaced: a hold, or a retention period not yet over."""
    if obj.get("eventBasedHold"):
        return "event-based hold"
    if obj.get("temporaryHold"):
        return "temporary hold"
    until = obj.get("retentionExpirationTime")
    if until and until > now():
        return f"retention until {until}"
    return None


def bucket_resource(b):
    r = {
        "kind": "storage#bucket",
        "id": b["name"],
        "name": b["name"],
        "metageneration": str(b["metageneration"]),
        "location": b.get("location", "US"),
        "storageClass": b.get("storageClass", "STANDARD"),
        "versioning": b.get("versioning", {"enabled": False}),
    }
    for field in ("labels", "lifecycle", "encryption", "retentionPolicy"):
        if b.get(field):
            r[field] = b[field]
    return r


def select_fields(doc, fields):
    """A minimal `fields` partial response: `items(a,b),nextPageToken` or `a,b`."""
    if not fields:
        return doc
    out = {}
    for part in re.findall(r"[^,(]+(?:\([^)]*\))?", fields):
        part = part.strip()
        m = re.match(r"(\w+)\((.*)\)", part)
        if m:
            key, sub = m.group(1), [s.strip() for s in m.group(2).split(",")]
            if key in doc:
                out[key] = [{k: v for k, v in item.items() if k in sub} for item in doc[key]]
        elif part in doc:
            out[part] = doc[part]
    return out


def page(items, q):
    start = int(q.get("pageToken", ["0"])[0] or 0)
    size = int(q.get("maxResults", ["1000"])[0])
    chunk = items[start:start + size]
    doc = {"items": chunk}
    if start + size < len(items):
        doc["nextPageToken"] = str(start + size)
    return doc


def live(bucket, name):
    for o in reversed(bucket["objects"].get(name, [])):
        if not o.get("timeDeleted"):
            return o
    return None


def precondition(q, name, actual):
    if name in q and int(q[name][0]) != actual:
        raise HttpError(412, f"{name} {q[name][0]} does not match {actual}", "conditionNotMet")


def put_object(bucket, name, data, content_type, kms_key, csek, metadata, storage_class="STANDARD"):
    if csek is None and kms_key is None:
        kms_key = (bucket.get("encryption") or {}).get("defaultKmsKeyName")
    versions = bucket["objects"].setdefault(name, [])
    current = live(bucket, name)
    if current is not None and held(current):
        raise HttpError(403, f"Object '{name}' is under active {held(current)} and cannot be deleted, overwritten or archived until it is released.", "forbidden")
    if current is not None:
        if bucket.get("versioning", {}).get("enabled"):
            current["timeDeleted"] = now()
        else:
            versions.remove(current)
    obj = {
        "name": name,
        "generation": next_generation(),
        "metageneration": 1,
        "contentType": content_type or "application/octet-stream",
        "data": data,
        "kmsKeyName": kms_key,
        "csek": csek,
        "metadata": metadata or {},
        "storageClass": storage_class,
        "timeCreated": now(),
        "updated": now(),
    }
    period = int((bucket.get("retentionPolicy") or {}).get("retentionPeriod") or 0)
    if period:
        obj["retentionExpirationTime"] = time.strftime(
            "%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + period))
    versions.append(obj)
    return obj


BATCH = Batch(STATE, LOCK, (None, live, put_object, held, HttpError, EXTRA_FIELDS))
BATCH.reset()


def error_doc(code, message, reason):
    return {"error": {"code": code, "message": message, "errors": [{"reason": reason, "message": message}]}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, doc=None, raw=None, content_type="application/json"):
        body = raw if raw is not None else (json.dumps(doc).encode() if doc is not None else b"")
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        # Read once per request (a hook may ask for it after the route did).
        if self._body is None:
            n = int(self.headers.get("Content-Length") or 0)
            self._body = self.rfile.read(n) if n else b""
        return self._body

    def dispatch(self, method):
        self._body = None
        self.body()  # always read it: a body left unread would corrupt the next keep-alive request
        url = urlparse(self.path)
        q = parse_qs(url.query)
        path = url.path
        if path.startswith("/_rekey/hook"):
            code, text = HOOKS.handle(method, path, q, self.body())
            return self.reply(code, raw=text.encode())
        m = re.match(r"(?:/upload)?/storage/v1/b/([^/]+)", path)
        scope = HOOKS.scope_of_name(unquote(m.group(1))) if m and HOOKS.armed() else None
        if scope is None and HOOKS.armed():
            # A batch operations request is scoped by the bucket of its job.
            scope = HOOKS.scope_of_name(BATCH.bucket_of(path, self.body()))

        def serve():
            try:
                batch = BATCH.handle(method, path, q, self.body())
                if batch is not None:
                    return batch[0], batch[1], None, "application/json"
                with LOCK:
                    code, doc, raw, ctype = self.route(method, path, q)
                return code, doc, raw, ctype or "application/json"
            except HttpError as e:
                return e.code, error_doc(e.code, e.message, e.reason), None, "application/json"

        def fail(status, code):
            self.body()
            return status, error_doc(status, f"injected by a test hook ({code})", code), None, "application/json"

        code, doc, raw, ctype = HOOKS.serve(scope, f"{method} {self.path}", serve, fail)
        self.reply(code, doc, raw, ctype)

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PATCH(self):
        self.dispatch("PATCH")

    def bucket(self, name):
        b = STATE["buckets"].get(name)
        if b is None:
            raise HttpError(404, f"bucket {name} not found", "notFound")
        return b

    def csek_headers(self, prefix="x-goog-encryption"):
        key = self.headers.get(f"{prefix}-key")
        if not key:
            return None
        return base64.b64encode(hashlib.sha256(base64.b64decode(key)).digest()).decode()

    def route(self, method, path, q):
        if path == "/_rekey/reset" and method == "POST":
            reset()
            return 200, {}, None, None
        m = re.fullmatch(r"/storage/v1/projects/([^/]+)/serviceAccount", path)
        if m and method == "GET":
            number = project_number(unquote(m.group(1)))
            return 200, {"kind": "storage#serviceAccount",
                         "email_address": f"service-{number}@gs-project-accounts.iam.gserviceaccount.com"}, None, None
        if path.startswith("/v1/projects/"):
            return self.kms(method, path[len("/v1/"):], q)
        m = re.fullmatch(r"/storage/v1/b", path)
        if m and method == "GET":
            names = sorted(STATE["buckets"])
            items = [bucket_resource(STATE["buckets"][n]) for n in names]
            doc = page(items, q)
            doc["kind"] = "storage#buckets"
            return 200, select_fields(doc, q.get("fields", [None])[0]), None, None
        if m and method == "POST":
            spec = json.loads(self.body() or b"{}")
            name = spec["name"]
            if name in STATE["buckets"]:
                raise HttpError(409, f"bucket {name} already exists", "conflict")
            b = {k: v for k, v in spec.items() if k in ("labels", "versioning", "lifecycle", "encryption", "location", "storageClass", "retentionPolicy")}
            b.update(name=name, metageneration=1, objects={})
            STATE["buckets"][name] = b
            return 200, bucket_resource(b), None, None
        m = re.fullmatch(r"/storage/v1/b/([^/]+)", path)
        if m:
            b = self.bucket(unquote(m.group(1)))
            if method == "GET":
                return 200, bucket_resource(b), None, None
            if method == "PATCH":
                precondition(q, "ifMetagenerationMatch", b["metageneration"])
                patch = json.loads(self.body() or b"{}")
                for field, value in patch.items():
                    if field in ("name", "id", "kind", "metageneration", "objects"):
                        continue
                    if field == "encryption" and value is not None:
                        # Patch semantics inside: given fields change, a null removes one.
                        merged = dict(b.get("encryption") or {})
                        for k, v in value.items():
                            if v is None:
                                merged.pop(k, None)
                            else:
                                merged[k] = v
                        if merged:
                            b["encryption"] = merged
                        else:
                            b.pop("encryption", None)
                        continue
                    if field == "labels" and value is not None:
                        labels = dict(b.get("labels") or {})
                        for k, v in value.items():
                            if v is None:
                                labels.pop(k, None)
                            else:
                                labels[k] = v
                        b["labels"] = labels
                    elif value is None:
                        b.pop(field, None)
                    else:
                        b[field] = value
                b["metageneration"] += 1
                return 200, bucket_resource(b), None, None
        m = re.fullmatch(r"/storage/v1/b/([^/]+)/o", path)
        if m and method == "GET":
            b = self.bucket(unquote(m.group(1)))
            prefix = q.get("prefix", [""])[0]
            versions = q.get("versions", ["false"])[0] == "true"
            # startOffset (inclusive) and endOffset (exclusive) bound the names listed.
            start, end = q.get("startOffset", [""])[0], q.get("endOffset", [None])[0]
            items = []
            for name in sorted(b["objects"]):
                if not name.startswith(prefix) or name < start or (end is not None and name >= end):
                    continue
                for o in b["objects"][name]:
                    if versions or not o.get("timeDeleted"):
                        items.append(object_resource(b["name"], o))
            doc = page(items, q)
            doc["kind"] = "storage#objects"
            return 200, select_fields(doc, q.get("fields", [None])[0]), None, None
        m = re.fullmatch(r"/upload/storage/v1/b/([^/]+)/o", path)
        if m and method == "POST":
            b = self.bucket(unquote(m.group(1)))
            name = q["name"][0]
            current = live(b, name)
            precondition(q, "ifGenerationMatch", current["generation"] if current else 0)
            # A new object takes the bucket's default storage class, as on GCS.
            obj = put_object(b, name, self.body(), self.headers.get("Content-Type"),
                             q.get("kmsKeyName", [None])[0], self.csek_headers(), None,
                             b.get("storageClass", "STANDARD"))
            return 200, object_resource(b["name"], obj), None, None
        m = re.fullmatch(r"/storage/v1/b/([^/]+)/o/(.+)/rewriteTo/b/([^/]+)/o/(.+)", path)
        if m and method == "POST":
            return self.rewrite(q, *[unquote(x) for x in m.groups()])
        m = re.fullmatch(r"/storage/v1/b/([^/]+)/o/(.+)", path)
        if m:
            b = self.bucket(unquote(m.group(1)))
            name = unquote(m.group(2))
            obj = self.find(b, name, q)
            if method == "GET":
                if q.get("alt", [""])[0] == "media":
                    if obj.get("csek") and self.csek_headers() != obj["csek"]:
                        raise HttpError(400, "the object is encrypted with a customer-supplied key", "customerEncryptionKeyIsIncorrect")
                    return 200, None, obj["data"], obj["contentType"]
                return 200, object_resource(b["name"], obj), None, None
            if method == "PATCH":
                precondition(q, "ifMetagenerationMatch", obj["metageneration"])
                patch = json.loads(self.body() or b"{}")
                if "metadata" in patch:
                    md = dict(obj.get("metadata") or {})
                    for k, v in (patch["metadata"] or {}).items():
                        if v is None:
                            md.pop(k, None)
                        else:
                            md[k] = v
                    obj["metadata"] = md
                if "contentType" in patch:
                    obj["contentType"] = patch["contentType"]
                for hold in ("eventBasedHold", "temporaryHold"):
                    if hold in patch:
                        obj[hold] = bool(patch[hold])
                for field in EXTRA_FIELDS:
                    if field in patch:
                        obj[field] = patch[field]
                obj["metageneration"] += 1
                obj["updated"] = now()
                return 200, object_resource(b["name"], obj), None, None
        raise HttpError(404, f"no route for {method} {path}", "notFound")

    def kms(self, method, resource, q):
        ring = r"projects/[^/]+/locations/[^/]+/keyRings/[^/:]+"
        key = ring + r"/cryptoKeys/[^/:]+"
        m = re.fullmatch(f"({ring}|{key}):(getIamPolicy|setIamPolicy)", resource)
        if m:
            target, verb = m.group(1), m.group(2)
            if "/cryptoKeys/" in target and target not in STATE["kms"]:
                raise HttpError(404, f"{target} not found", "notFound")
            if verb == "getIamPolicy" and method == "GET":
                policy = STATE["policies"].get(target, {"version": 1, "bindings": []})
                return 200, dict(policy, etag=base64.b64encode(json.dumps(policy).encode()[:12]).decode()), None, None
            if verb == "setIamPolicy" and method == "POST":
                policy = json.loads(self.body() or b"{}").get("policy", {})
                policy = {"version": policy.get("version", 1), "bindings": policy.get("bindings", [])}
                STATE["policies"][target] = policy
                return 200, policy, None, None
        m = re.fullmatch(f"({ring})/cryptoKeys", resource)
        if m and method == "POST":
            name = f"{m.group(1)}/cryptoKeys/{q.get('cryptoKeyId', [''])[0]}"
            if name in STATE["kms"]:
                raise HttpError(409, f"{name} already exists", "alreadyExists")
            spec = json.loads(self.body() or b"{}")
            STATE["kms"][name] = {"purpose": spec.get("purpose", "ENCRYPT_DECRYPT"), "state": "ENABLED"}
            return 200, kms_key_resource(name, STATE["kms"][name]), None, None
        m = re.fullmatch(f"({key})/cryptoKeyVersions/1", resource)
        if m and method == "PATCH":
            k = STATE["kms"].get(m.group(1))
            if k is None:
                raise HttpError(404, f"{m.group(1)} not found", "notFound")
            k["state"] = json.loads(self.body() or b"{}").get("state", k["state"])
            return 200, {"name": resource, "state": k["state"]}, None, None
        if re.fullmatch(key, resource) and method == "GET":
            k = STATE["kms"].get(resource)
            if k is None:
                raise HttpError(404, f"{resource} not found", "notFound")
            return 200, kms_key_resource(resource, k), None, None
        raise HttpError(404, f"no Cloud KMS route for {method} {resource}", "notFound")

    def find(self, b, name, q):
        gen = q.get("generation", [None])[0]
        for o in b["objects"].get(name, []):
            if gen is not None and str(o["generation"]) == gen:
                return o
        if gen is None:
            o = live(b, name)
            if o is not None:
                return o
        raise HttpError(404, f"object {name} not found", "notFound")

    def rewrite(self, q, sbucket, sname, dbucket, dname):
        sb, db = self.bucket(sbucket), self.bucket(dbucket)
        src_q = {"generation": q["sourceGeneration"]} if "sourceGeneration" in q else {}
        src = self.find(sb, sname, src_q)
        precondition(q, "ifSourceGenerationMatch", src["generation"])
        precondition(q, "ifSourceMetagenerationMatch", src["metageneration"])
        current = live(db, dname)
        precondition(q, "ifGenerationMatch", current["generation"] if current else 0)
        if src.get("csek") and self.csek_headers("x-goog-copy-source-encryption") != src["csek"]:
            raise HttpError(400, "the source object is encrypted with a customer-supplied key", "resourceIsEncryptedWithCustomerEncryptionKey")
        size = len(src["data"])
        per_call = int(q.get("maxBytesRewrittenPerCall", [str(size or 1)])[0])
        token = q.get("rewriteToken", [None])[0]
        done_bytes = 0
        if token:
            tok = json.loads(base64.b64decode(token))
            if tok["src"] != src["generation"]:
                raise HttpError(400, "the rewrite token is for another source generation", "invalid")
            done_bytes = tok["done"]
        done_bytes = min(size, done_bytes + max(per_call, 1))
        if done_bytes < size:
            tok = base64.b64encode(json.dumps({"src": src["generation"], "done": done_bytes}).encode()).decode()
            return 200, {"kind": "storage#rewriteResponse", "totalBytesRewritten": str(done_bytes),
                         "objectSize": str(size), "done": False, "rewriteToken": tok}, None, None
        meta = json.loads(self.body() or b"{}")
        # Metadata in the body overrides the source's; a storage class the request does not
        # name is the destination bucket's default class (not the source's).
        obj = put_object(db, dname, src["data"], meta.get("contentType", src["contentType"]),
                         q.get("destinationKmsKeyName", [None])[0], None,
                         meta.get("metadata", src.get("metadata")),
                         meta.get("storageClass") or db.get("storageClass", "STANDARD"))
        for field in EXTRA_FIELDS:
            if meta.get(field) is not None or src.get(field) is not None:
                obj[field] = meta.get(field, src.get(field))
        return 200, {"kind": "storage#rewriteResponse", "totalBytesRewritten": str(size),
                     "objectSize": str(size), "done": True, "resource": object_resource(dbucket, obj)}, None, None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--parent-pid", type=int)
    a = ap.parse_args()
    server = ThreadingHTTPServer((a.host, a.port), Handler)
    port = server.server_address[1]
    if a.parent_pid:
        def watch():
            while True:
                try:
                    os.kill(a.parent_pid, 0)
                except ProcessLookupError:
                    os._exit(0)
                except PermissionError:
                    pass
                time.sleep(0.5)
        threading.Thread(target=watch, daemon=True).start()
    if a.port_file:
        with open(a.port_file + ".tmp", "w") as f:
            f.write(str(port))
        os.replace(a.port_file + ".tmp", a.port_file)
    print(f"GCS test server on http://{a.host}:{port}", file=sys.stderr)
    server.serve_forever()


if __name__ == "__main__":
    main()

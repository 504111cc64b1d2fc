"""Deterministic interleaving hooks for rekey's tests, shared by the moto overlay and the GCS
test server (standard library only).

A test arms a hook for one *scope* (for the AWS overlay: the access key the rekey process under
test signs with; for the GCS server: a bucket-name prefix), so that tests running at the same
time against one server never see each other's hooks. The hook counts that scope's requests
and acts at the N-th one, `before` it is served or `after` it was served (its effect is in the
backend, its answer not yet sent):

- `pause`: the request waits until the test releases it. Meanwhile the test makes a foreign
  write (another writer's PutObject, a bucket rule change, an endpoint redeploy) or SIGKILLs
  rekey. A release with `drop: true` before the request was served answers 500 without
  serving it (the request never reached the service).
- `fail`: answer `status` with error `code` (500 InternalError unless told): before, without
  serving the request; after, once it was served (the effect happened, the client sees an
  error: the hardest case for a client).
- `count`: only count (a dry run that tells the test how many requests a command makes).

With `on` (a substring), only requests whose description (`SERVICE METHOD PATH?QUERY TARGET`)
contains it are counted: `{"on": "x-id=CopyObject", "at": 1}` acts on the first CopyObject.

Endpoints (the server routes them here):
  POST /_rekey/hook          {"scope", "action", "at", "when", "status", "code"}; action "off" disarms
  GET  /_rekey/hook?scope=S  {"count", "fired", "paused", "log"}
  POST /_rekey/hook/release  {"scope", "drop"}
"""

import json
import threading

PAUSE_LIMIT_SECONDS = 60.0


class Hook:
    def __init__(self, spec):
        self.action = spec.get("action", "count")
        self.at = int(spec.get("at", 0))
        self.when = spec.get("when", "before")
        self.status = int(spec.get("status", 500))
        self.code = spec.get("code", "InternalError")
        self.on = spec.get("on")
        self.count = 0
        self.fired = False
        self.paused = None
        self.log = []
        self.released = threading.Event()
        self.drop = False


class Hooks:
    def __init__(self):
        self.lock = threading.Lock()
        self.hooks = {}

    def armed(self):
        return bool(self.hooks)

    def scope_of_name(self, name):
        """The armed scope that `name` (a bucket name) starts with, if any."""
        if not name:
            return None
        with self.lock:
            for scope in self.hooks:
                if scope and name.startswith(scope):
                    return scope
        return None

    def handle(self, method, path, query, body):
        """Answer a hook endpoint: (status, JSON text), or None if `path` is not one."""
        if path == "/_rekey/hook" and method == "POST":
            spec = json.loads(body or b"{}")
            scope = spec.get("scope", "")
            with self.lock:
                old = self.hooks.pop(scope, None)
                if old is not None:
                    old.released.set()
                if spec.get("action") != "off":
                    self.hooks[scope] = Hook(spec)
            return 200, json.dumps({"armed": spec.get("action") != "off"})
        if path == "/_rekey/hook" and method == "GET":
            scope = (query.get("scope") or [""])[0]
            with self.lock:
                h = self.hooks.get(scope)
                doc = (
                    {"count": 0, "fired": False, "paused": None, "log": []}
                    if h is None
                    else {"count": h.count, "fired": h.fired, "paused": h.paused, "log": h.log}
                )
            return 200, json.dumps(doc)
        if path == "/_rekey/hook/release" and method == "POST":
            spec = json.loads(body or b"{}")
            with self.lock:
                h = self.hooks.get(spec.get("scope", ""))
            if h is None:
                return 404, json.dumps({"error": "no hook for that scope"})
            h.drop = bool(spec.get("drop", False))
            h.released.set()
            return 200, json.dumps({"released": True})
        return None

    def _take(self, scope, desc):
        """Count one request of `scope`; the hook, if this is the request it acts on."""
        with self.lock:
            h = self.hooks.get(scope)
            if h is None or (h.on and h.on not in desc):
                return None
            h.count += 1
            h.log.append(desc)
            if h.fired or h.action not in ("pause", "fail") or h.count != h.at:
                return None
            h.fired = True
            return h

    @staticmethod
    def _wait(h, desc, when):
        h.paused = f"{when} {desc}"
        h.released.wait(PAUSE_LIMIT_SECONDS)
        h.paused = None

    def serve(self, scope, desc, serve, fail):
        """Serve a request through the hook of `scope`. `serve()` runs the request and returns
        its whole response; `fail(status, code)` builds an error response."""
        h = self._take(scope, desc) if scope is not None else None
        if h is None:
            return serve()
        if h.when == "before":
            if h.action == "fail":
                return fail(h.status, h.code)
            self._wait(h, desc, "before")
            if h.drop:
                return fail(500, "InternalError")
            return serve()
        response = serve()
        if h.action == "fail":
            return fail(h.status, h.code)
        self._wait(h, desc, "after")
        return response

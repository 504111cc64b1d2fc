"""Seed a small Cloud Storage estate on the project's GCS test server (scripts/gcs_test_server.py):
a labelled, versioned training bucket on Google-managed keys, and a models bucket whose default
is a foreign key, with a customer-supplied-key object; the Cloud KMS keys ml-vision and legacy,
each with the project's Cloud Storage service agent bound to use it.
Usage: seed_gcs.py ENDPOINT [PREFIX]"""

import base64
import json
import sys
import urllib.error
import urllib.request


def main(base, p=""):
    def call(path, body=None, data=None, headers=None):
        if data is None and body is not None:
            data = json.dumps(body).encode()
        req = urllib.request.Request(base + path, data=data or b"", method="POST", headers=headers or {})
        return json.loads(urllib.request.urlopen(req).read() or b"{}")

    project = "demo-project"
    key = lambda n: f"projects/{project}/locations/us/keyRings/ml/cryptoKeys/{n}"
    agent = None
    for n in ["ml-vision", "legacy"]:
        try:
            call(f"/v1/projects/{project}/locations/us/keyRings/ml/cryptoKeys?cryptoKeyId={n}",
                 {"purpose": "ENCRYPT_DECRYPT"})
        except urllib.error.HTTPError as e:
            if e.code != 409:
                raise
        if agent is None:
            agent = json.loads(urllib.request.urlopen(
                f"{base}/storage/v1/projects/{project}/serviceAccount").read())["email_address"]
        call(f"/v1/{key(n)}:setIamPolicy", {"policy": {"bindings": [
            {"role": "roles/cloudkms.cryptoKeyEncrypterDecrypter", "members": [f"serviceAccount:{agent}"]}]}})
    call(f"/storage/v1/b?project={project}", {"name": f"{p}ml-gcs-train", "labels": {"team": "vision"},
                                              "versioning": {"enabled": True}})
    call(f"/storage/v1/b?project={project}", {"name": f"{p}ml-gcs-models", "labels": {"team": "vision"},
                                              "encryption": {"defaultKmsKeyName": key("legacy")}})
    for i in range(8):
        call(f"/upload/storage/v1/b/{p}ml-gcs-train/o?uploadType=media&name=shards/{i:03d}.tfrecord",
             data=(b"%03d" % i) * 300)
    call(f"/upload/storage/v1/b/{p}ml-gcs-models/o?uploadType=media&name=vit/model.pt", data=b"w" * 2048)
    call(f"/upload/storage/v1/b/{p}ml-gcs-models/o?uploadType=media&name=vit/on-target.pt&kmsKeyName={key('ml-vision')}",
         data=b"done")
    secret = base64.b64encode(b"s" * 32).decode()
    call(f"/upload/storage/v1/b/{p}ml-gcs-models/o?uploadType=media&name=vit/secret.pt", data=b"secret",
         headers={"x-goog-encryption-algorithm": "AES256", "x-goog-encryption-key": secret})


if __name__ == "__main__":
    main(*sys.argv[1:])

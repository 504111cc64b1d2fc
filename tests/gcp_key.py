"""Make a Cloud KMS key on the GCS test server ready for Cloud Storage: create it (if absent)
and bind the project's Cloud Storage service agent to roles/cloudkms.cryptoKeyEncrypterDecrypter
on it, as an operator would before a campaign.

Usage: gcp_key.py ENDPOINT KEY_NAME [MODE], MODE one of --no-binding, --conditional-binding,
--disabled (create, then disable its primary version), --clear (remove every binding of the key),
--enable (enable its primary version again).
"""

import json
import sys
import urllib.error
import urllib.request


def call(base, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        return json.loads(urllib.request.urlopen(req).read() or b"{}")
    except urllib.error.HTTPError as e:
        if e.code == 409:
            return {}
        raise


def main(base, name, mode=""):
    parent, key_id = name.split("/cryptoKeys/")
    project = name.split("/")[1]
    if mode == "--clear":
        call(base, "POST", f"/v1/{name}:setIamPolicy", {"policy": {"bindings": []}})
        return
    if mode == "--enable":
        call(base, "PATCH", f"/v1/{name}/cryptoKeyVersions/1?updateMask=state", {"state": "ENABLED"})
        return
    call(base, "POST", f"/v1/{parent}/cryptoKeys?cryptoKeyId={key_id}", {"purpose": "ENCRYPT_DECRYPT"})
    if mode == "--disabled":
        call(base, "PATCH", f"/v1/{name}/cryptoKeyVersions/1?updateMask=state", {"state": "DISABLED"})
    if mode == "--no-binding":
        return
    agent = call(base, "GET", f"/storage/v1/projects/{project}/serviceAccount")["email_address"]
    binding = {"role": "roles/cloudkms.cryptoKeyEncrypterDecrypter",
               "members": [f"serviceAccount:{agent}"]}
    if mode == "--conditional-binding":
        binding["condition"] = {"title": "business hours",
                                "expression": "request.time.getHours('UTC') < 18"}
    call(base, "POST", f"/v1/{name}:setIamPolicy", {"policy": {"version": 3, "bindings": [binding]}})


if __name__ == "__main__":
    main(*sys.argv[1:])

"""A minimal Kubernetes REST client for engine tests, built from a kubeconfig alone.

Only the kubeconfig is assumed of the engine cluster fixture, so the tests that use this work
whichever way the cluster is started.
"""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import yaml


class KubeApi:
    def __init__(self, kubeconfig: Path):
        config = yaml.safe_load(Path(kubeconfig).read_text())
        context_name = config.get("current-context") or config["contexts"][0]["name"]
        context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        self.server = cluster["server"].rstrip("/")
        self._files = tempfile.TemporaryDirectory(prefix="kubeapi-")
        self.ssl = ssl.create_default_context(cafile=self._material(cluster, "certificate-authority"))
        cert = self._material(user, "client-certificate")
        if cert:
            self.ssl.load_cert_chain(cert, self._material(user, "client-key"))
        self.token = user.get("token")

    def _material(self, section: dict, key: str) -> str | None:
        if section.get(f"{key}-data"):
            path = Path(self._files.name) / key
            path.write_bytes(base64.b64decode(section[f"{key}-data"]))
            return str(path)
        return section.get(key)

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.server + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, context=self.ssl, timeout=15) as response:
                text = response.read().decode()
                status = response.status
        except urllib.error.HTTPError as error:
            text, status = error.read().decode(), error.code
        return status, (json.loads(text) if text.strip().startswith("{") else {"raw": text})

    def get(self, path: str) -> dict:
        status, body = self.request("GET", path)
        assert status == 200, f"GET {path}: {status} {body}"
        return body

    def exists(self, path: str) -> bool:
        status, body = self.request("GET", path)
        assert status in (200, 404), f"GET {path}: {status} {body}"
        return status == 200

    def namespaced_kinds(self) -> dict[tuple[str, str], bool]:
        """(apiVersion, kind) -> namespaced?, from the API server's discovery documents."""
        result = {}
        versions = [("v1", "/api/v1")]
        for group in self.get("/apis")["groups"]:
            versions += [(v["groupVersion"], f"/apis/{v['groupVersion']}") for v in group["versions"]]
        for api_version, path in versions:
            for resource in self.get(path)["resources"]:
                if "/" not in resource["name"]:
                    result[(api_version, resource["kind"])] = resource["namespaced"]
        return result

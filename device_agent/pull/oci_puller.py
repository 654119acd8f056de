"""The built-in puller: no container engine needed. It fetches the manifest (OCI or Docker
schema 2; from an image index or manifest list it picks the configured platform, else the first
entry), then the config and every layer, checking each against its sha256 digest, and writes an
OCI image layout ``<output>/<repository with / as +>`` tagged with the image's tag.

The manifest digest is checked too: against the pinned digest when pulling by digest, against
the registry's ``Docker-Content-Digest`` header otherwise. Blobs already in the layout with the
right size are not fetched again.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import requests

from device_agent.pull.backend import PullCancelled, PullFailed, PullRequest
from device_agent.pull.oci_layout import DigestMismatch, OciLayout, sha256_digest
from device_agent.pull.registry_http import RegistryClient

log = logging.getLogger(__name__)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
ACCEPT = ", ".join((*MANIFEST_TYPES, *INDEX_TYPES))
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
CHUNK_BYTES = 256 * 1024


def select_platform(index: dict[str, Any], platform: str) -> dict[str, Any]:
    """The index entry for ``os/arch[/variant]``; the first entry when none matches."""
    entries = [m for m in index.get("manifests", []) if isinstance(m, dict)]
    if not entries:
        raise PullFailed("the image index lists no manifests")
    wanted = platform.split("/")
    for entry in entries:
        found = entry.get("platform") or {}
        have = [found.get("os"), found.get("architecture"), found.get("variant")]
        if have[: len(wanted)] == wanted:
            return entry
    log.info("no %s entry in the image index; taking the first", platform)
    return entries[0]


def _media_type(manifest: dict[str, Any], header: str) -> str:
    return str(manifest.get("mediaType") or header.split(";")[0].strip())


class BuiltinPuller:
    name = "builtin"

    def __init__(self) -> None:
        self._session: requests.Session | None = None
        self._schemes: dict[str, str] = {}

    def pull(self, request: PullRequest, cancel: threading.Event) -> str:
        image, credentials = request.image, request.credentials
        client = RegistryClient(
            credentials.login_server,
            image.repository,
            credentials.username,
            credentials.password,
            tls_verify=request.tls_verify,
            cancel=cancel,
            session=self._session_for_pulls(),
            schemes=self._schemes,
        )
        try:
            layout = OciLayout(request.output / image.layout_name)
            digest, manifest, raw = self._manifest(client, image.reference, image.digest)
            if _media_type(manifest, "") in INDEX_TYPES or "manifests" in manifest:
                entry = select_platform(manifest, request.platform)
                digest, manifest, raw = self._manifest(client, entry["digest"], entry["digest"])
            media_type = _media_type(manifest, "")
            if "config" not in manifest or "layers" not in manifest:
                raise PullFailed(f"unsupported manifest type {media_type or 'unknown'}")
            for descriptor in [manifest["config"], *manifest["layers"]]:
                self._blob(client, layout, descriptor, cancel)
            layout.write_blob(digest, raw)
            layout.tag(
                image.layout_ref,
                {"mediaType": media_type or OCI_MANIFEST, "digest": digest, "size": len(raw)},
            )
            return digest
        except DigestMismatch as error:
            raise PullFailed(f"digest check failed: {error}") from None
        except OSError as error:
            raise PullFailed(f"cannot write the image layout: {error.strerror or error}") from None

    def _session_for_pulls(self) -> requests.Session:
        if self._session is None:
            self._session = requests.Session()
        return self._session

    def _manifest(
        self, client: RegistryClient, reference: str, pinned: str | None
    ) -> tuple[str, dict[str, Any], bytes]:
        answer = client.get(f"manifests/{reference}", accept=ACCEPT)
        raw = answer.content[: MAX_MANIFEST_BYTES + 1]
        if len(raw) > MAX_MANIFEST_BYTES:
            raise PullFailed("manifest too large")
        digest = sha256_digest(raw)
        claimed = pinned or answer.headers.get("Docker-Content-Digest")
        if claimed and claimed != digest:
            raise PullFailed(f"manifest digest {digest} is not the expected {claimed}")
        try:
            manifest = json.loads(raw)
        except ValueError:
            raise PullFailed("the manifest is not JSON") from None
        if not isinstance(manifest, dict):
            raise PullFailed("the manifest is not a JSON object")
        header_type = answer.headers.get("Content-Type", "")
        manifest.setdefault("mediaType", _media_type(manifest, header_type))
        return digest, manifest, raw

    def _blob(
        self,
        client: RegistryClient,
        layout: OciLayout,
        descriptor: dict[str, Any],
        cancel: threading.Event,
    ) -> None:
        digest, size = descriptor.get("digest"), descriptor.get("size")
        if not isinstance(digest, str) or not isinstance(size, int):
            raise PullFailed("a descriptor lacks its digest or size")
        if layout.has_blob(digest, size):
            return
        answer = client.get(f"blobs/{digest}", stream=True)
        try:
            with layout.blob_writer(digest, size) as out:
                for chunk in answer.iter_content(CHUNK_BYTES):
                    if cancel.is_set():
                        raise PullCancelled()
                    out.write(chunk)
        finally:
            answer.close()

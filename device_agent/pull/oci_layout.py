"""An OCI image layout on disk (image-spec ``image-layout.md``): ``oci-layout``, ``index.json``
and content-addressed ``blobs/sha256/<hex>``. Every blob is checked against its digest and size
before it gets its name, and every file is replaced atomically, so a power cut leaves either the
old layout or the new one and never a blob whose name lies about its content.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from device_agent.state.atomic import fsync_dir, write_atomic

LAYOUT_VERSION = "1.0.0"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
ALGORITHM = "sha256"
PUBLIC_MODE = 0o644
DIR_MODE = 0o755


class DigestMismatch(Exception):
    """Content that does not hash to the digest (or size) it was fetched under."""


def sha256_digest(data: bytes) -> str:
    return f"{ALGORITHM}:{hashlib.sha256(data).hexdigest()}"


def _hex_of(digest: str) -> str:
    algorithm, _, hex_digest = digest.partition(":")
    if (
        algorithm != ALGORITHM
        or len(hex_digest) != 64
        or not all(c in "0123456789abcdef" for c in hex_digest)
    ):
        raise DigestMismatch(f"unsupported digest {digest!r}")
    return hex_digest


class OciLayout:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.blobs = path / "blobs" / ALGORITHM
        self.blobs.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        marker = path / "oci-layout"
        if not marker.exists():
            layout = json.dumps({"imageLayoutVersion": LAYOUT_VERSION}).encode()
            write_atomic(marker, layout, PUBLIC_MODE)

    def blob_path(self, digest: str) -> Path:
        return self.blobs / _hex_of(digest)

    def has_blob(self, digest: str, size: int | None) -> bool:
        try:
            found = self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            return False
        return size is None or found == size

    def write_blob(self, digest: str, data: bytes) -> None:
        if sha256_digest(data) != digest:
            raise DigestMismatch(f"content does not match {digest}")
        write_atomic(self.blob_path(digest), data, PUBLIC_MODE)

    @contextlib.contextmanager
    def blob_writer(self, digest: str, size: int | None) -> Iterator[BinaryIO]:
        """Stream a blob in; on leaving, it is named ``digest`` only if it hashes to it."""
        target = self.blob_path(digest)
        temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        hasher = hashlib.sha256()
        try:
            with open(temp, "xb") as raw:
                writer = _HashingWriter(raw, hasher)
                yield writer  # type: ignore[misc]
                raw.flush()
                os.fsync(raw.fileno())
                written = writer.count
            if f"{ALGORITHM}:{hasher.hexdigest()}" != digest:
                raise DigestMismatch(f"blob does not match {digest}")
            if size is not None and written != size:
                raise DigestMismatch(f"blob {digest} is {written} bytes, not {size}")
            os.chmod(temp, PUBLIC_MODE)
            os.replace(temp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()

    def read_index(self) -> dict[str, Any]:
        try:
            index = json.loads((self.path / "index.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            index = None
        if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
            index = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": []}
        return index

    def tag(self, ref_name: str, descriptor: dict[str, Any]) -> None:
        """Point ``ref_name`` at ``descriptor`` in ``index.json`` (replacing an older one)."""
        index = self.read_index()
        kept = [
            m
            for m in index["manifests"]
            if not (isinstance(m, dict) and m.get("annotations", {}).get(REF_NAME) == ref_name)
        ]
        entry = {**descriptor, "annotations": {REF_NAME: ref_name}}
        index["manifests"] = [*kept, entry]
        fsync_dir(self.blobs)
        data = json.dumps(index, indent=2, sort_keys=True).encode("utf-8")
        write_atomic(self.path / "index.json", data, PUBLIC_MODE)


class _HashingWriter:
    def __init__(self, raw: BinaryIO, hasher: Any) -> None:
        self._raw, self._hasher, self.count = raw, hasher, 0

    def write(self, chunk: bytes) -> int:
        self._hasher.update(chunk)
        self.count += len(chunk)
        return self._raw.write(chunk)

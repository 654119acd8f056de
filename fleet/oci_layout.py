"""Tiny, valid OCI image layouts built on the spot, with the standard library only.

No image can be downloaded where fleet is tried out or tested, so ``scripts/start`` builds
its sample image (``samples/hello:1.0``) with this module and the tests build theirs. Each call
makes distinct content (a counter and random bytes in the layer's one file) unless given
``content``, so two images never share a digest unless asked to::

    image = build_oci_image(tmp_path / "image", tag="v1")
    skopeo.copy_to_registry(image, registry.host_port, "samples/hello-world", "v1", creds)
"""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import json
import secrets
import tarfile
from dataclasses import dataclass
from pathlib import Path

OCI_LAYOUT_VERSION = "1.0.0"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
DEFAULT_TAG = "latest"
DEFAULT_ARCHITECTURE = "arm64"
PAYLOAD_FILE = "hello.txt"
NONCE_BYTES = 8

_counter = itertools.count(1)


@dataclass(frozen=True)
class OciImage:
    path: Path
    tag: str
    manifest_digest: str
    config_digest: str
    layer_digest: str
    content: bytes

    @property
    def reference(self) -> str:
        """The skopeo source/destination name, ``oci:PATH:TAG``."""
        return f"oci:{self.path}:{self.tag}"


def _digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _descriptor(media_type: str, data: bytes) -> dict[str, object]:
    return {"mediaType": media_type, "digest": _digest(data), "size": len(data)}


def _write_blob(layout: Path, data: bytes) -> None:
    algorithm, hex_digest = _digest(data).split(":")
    blob = layout / "blobs" / algorithm / hex_digest
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)


def _layer_tar(content: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo(PAYLOAD_FILE)
        info.size = len(content)
        info.mode = 0o644
        archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8")


def build_oci_image(
    path: Path,
    *,
    tag: str = DEFAULT_TAG,
    content: bytes | None = None,
    architecture: str = DEFAULT_ARCHITECTURE,
) -> OciImage:
    """Write an OCI image layout with one gzip layer holding ``hello.txt`` into ``path``."""
    payload = content
    if payload is None:
        payload = f"hello from image {next(_counter)} {secrets.token_hex(NONCE_BYTES)}\n".encode()
    layer_tar = _layer_tar(payload)
    layer = gzip.compress(layer_tar, mtime=0)
    config = _json(
        {
            "architecture": architecture,
            "os": "linux",
            "config": {"Cmd": ["/bin/true"]},
            "rootfs": {"type": "layers", "diff_ids": [_digest(layer_tar)]},
        }
    )
    manifest = _json(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": _descriptor(CONFIG_MEDIA_TYPE, config),
            "layers": [_descriptor(LAYER_MEDIA_TYPE, layer)],
        }
    )
    layout = Path(path)
    layout.mkdir(parents=True, exist_ok=True)
    for blob in (layer, config, manifest):
        _write_blob(layout, blob)
    manifest_descriptor = _descriptor(MANIFEST_MEDIA_TYPE, manifest)
    manifest_descriptor["annotations"] = {REF_NAME_ANNOTATION: tag}
    index = {"schemaVersion": 2, "manifests": [manifest_descriptor]}
    (layout / "index.json").write_bytes(_json(index))
    (layout / "oci-layout").write_bytes(_json({"imageLayoutVersion": OCI_LAYOUT_VERSION}))
    return OciImage(
        path=layout,
        tag=tag,
        manifest_digest=_digest(manifest),
        config_digest=_digest(config),
        layer_digest=_digest(layer),
        content=payload,
    )


def read_layer_file(layout: Path, layer_digest: str) -> bytes:
    """The payload file of a layer in an OCI layout (or skopeo ``dir:`` copy)."""
    algorithm, hex_digest = layer_digest.split(":")
    candidates = [layout / "blobs" / algorithm / hex_digest, layout / hex_digest]
    blob = next((p for p in candidates if p.exists()), None)
    if blob is None:
        raise FileNotFoundError(f"layer {layer_digest} is not in {layout}")
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob.read_bytes()))) as archive:
        member = archive.extractfile(PAYLOAD_FILE)
        if member is None:
            raise FileNotFoundError(f"{PAYLOAD_FILE} missing from layer {layer_digest}")
        return member.read()

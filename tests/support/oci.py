"""The tests' OCI image layouts: the builder lives in :mod:`fleet.oci_layout`, which
``scripts/start`` uses for its sample image too. :func:`build_layered_image` makes an image of
several layers of given bytes (each a gzipped tar of one file, as skopeo pushes it unchanged),
for tests whose subject is the size or the order of the blobs a pull fetches."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fleet.oci_layout import (
    CONFIG_MEDIA_TYPE,
    DEFAULT_ARCHITECTURE,
    LAYER_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    OCI_LAYOUT_VERSION,
    REF_NAME_ANNOTATION,
    OciImage,
    build_oci_image,
    read_layer_file,
)

__all__ = ["LayeredImage", "OciImage", "build_layered_image", "build_oci_image", "read_layer_file"]

GZIP_LEVEL = 1  # random payloads do not compress; no time spent trying


@dataclass(frozen=True)
class LayeredImage:
    path: Path
    tag: str
    manifest_digest: str
    config_digest: str
    layer_digests: tuple[str, ...]  # in the manifest's order

    @property
    def reference(self) -> str:
        """The skopeo source name, ``oci:PATH:TAG``."""
        return f"oci:{self.path}:{self.tag}"

    def blob(self, digest: str) -> bytes:
        algorithm, hex_digest = digest.split(":")
        return (self.path / "blobs" / algorithm / hex_digest).read_bytes()

    @property
    def blob_digests(self) -> tuple[str, ...]:
        """Every blob a pull fetches: the config, then the layers."""
        return (self.config_digest, *self.layer_digests)


def _digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8")


def _tar_of(name: str, content: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        info.mode = 0o644
        archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def build_layered_image(path: Path, payloads: Sequence[bytes], *, tag: str) -> LayeredImage:
    """An OCI layout at ``path`` whose manifest lists one layer per payload, in that order;
    layer ``i`` is a gzipped tar holding ``layer-i.bin``. Random payloads give layers that do not
    compress and blobs that no other image shares."""
    if not payloads:
        raise ValueError("an image needs at least one layer")
    tars = [_tar_of(f"layer-{i}.bin", payload) for i, payload in enumerate(payloads)]
    layers = [gzip.compress(tar, compresslevel=GZIP_LEVEL, mtime=0) for tar in tars]
    config = _json(
        {
            "architecture": DEFAULT_ARCHITECTURE,
            "os": "linux",
            "config": {"Cmd": ["/bin/true"]},
            "rootfs": {"type": "layers", "diff_ids": [_digest(tar) for tar in tars]},
        }
    )

    def descriptor(media_type: str, data: bytes) -> dict[str, object]:
        return {"mediaType": media_type, "digest": _digest(data), "size": len(data)}

    manifest = _json(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": descriptor(CONFIG_MEDIA_TYPE, config),
            "layers": [descriptor(LAYER_MEDIA_TYPE, layer) for layer in layers],
        }
    )
    path.mkdir(parents=True, exist_ok=True)
    for blob in (*layers, config, manifest):
        algorithm, hex_digest = _digest(blob).split(":")
        (path / "blobs" / algorithm).mkdir(parents=True, exist_ok=True)
        (path / "blobs" / algorithm / hex_digest).write_bytes(blob)
    entry = {**descriptor(MANIFEST_MEDIA_TYPE, manifest), "annotations": {REF_NAME_ANNOTATION: tag}}
    (path / "index.json").write_bytes(_json({"schemaVersion": 2, "manifests": [entry]}))
    (path / "oci-layout").write_bytes(_json({"imageLayoutVersion": OCI_LAYOUT_VERSION}))
    return LayeredImage(
        path=path,
        tag=tag,
        manifest_digest=_digest(manifest),
        config_digest=_digest(config),
        layer_digests=tuple(_digest(layer) for layer in layers),
    )

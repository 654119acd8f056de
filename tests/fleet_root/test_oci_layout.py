"""The OCI layout builder that scripts/start's sample image and the tests share."""

from __future__ import annotations

import json
from pathlib import Path

from fleet.oci_layout import build_oci_image, read_layer_file


def test_given_content_makes_the_same_image_every_time(tmp_path: Path) -> None:
    # scripts/start pushes samples/hello:1.0 on every start: the same digest each time.
    content = b"hello from fleet's sample image\n"
    first = build_oci_image(tmp_path / "a", tag="1.0", content=content)
    again = build_oci_image(tmp_path / "b", tag="1.0", content=content)
    assert first.manifest_digest == again.manifest_digest
    assert read_layer_file(first.path, first.layer_digest) == content
    index = json.loads((first.path / "index.json").read_text())
    assert index["manifests"][0]["annotations"] == {"org.opencontainers.image.ref.name": "1.0"}
    assert first.reference == f"oci:{tmp_path / 'a'}:1.0"


def test_without_content_two_images_differ(tmp_path: Path) -> None:
    one = build_oci_image(tmp_path / "a")
    two = build_oci_image(tmp_path / "b")
    assert one.manifest_digest != two.manifest_digest

"""The tests' OCI image layouts: the builder lives in :mod:`fleet.oci_layout`, which
``scripts/start`` uses for its sample image too."""

from fleet.oci_layout import OciImage, build_oci_image, read_layer_file

__all__ = ["OciImage", "build_oci_image", "read_layer_file"]

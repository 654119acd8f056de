"""Image references as the agent's configuration and ``pull`` commands name them:
``repository[:tag]``, ``repository@sha256:HEX``, optionally prefixed with the registry's login
server (which must then be the device's own: it holds no other credentials).

Names follow the distribution reference grammar (lower-case path components separated by
``/``; tags of word characters, ``.`` and ``-``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_TAG = "latest"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[\w][\w.-]{0,127}")
DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}")
MAX_REPOSITORY_CHARS = 255


class InvalidImage(ValueError):
    pass


@dataclass(frozen=True)
class ImageRef:
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/``: the digest when pinned, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def name(self) -> str:
        if self.digest:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag or DEFAULT_TAG}"

    def full_name(self, login_server: str) -> str:
        return f"{login_server}/{self.name()}"

    @property
    def layout_name(self) -> str:
        """The OCI layout directory of this repository: ``/`` cannot appear in a file name and
        ``+`` cannot appear in a repository, so ``samples/app`` becomes ``samples+app``."""
        return self.repository.replace("/", "+")

    @property
    def layout_ref(self) -> str:
        """The ``org.opencontainers.image.ref.name`` inside that layout."""
        return self.tag or (self.digest or DEFAULT_TAG).replace(":", "-")


def _strip_registry(name: str, login_server: str) -> str:
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        if first.lower() != login_server.lower():
            raise InvalidImage(f"{name!r} is not on this device's registry {login_server}")
        return rest
    return name


def parse_image(name: str, login_server: str) -> ImageRef:
    """Parse one reference; raises ``InvalidImage`` with the reason."""
    remainder = _strip_registry(name.strip(), login_server)
    digest = tag = None
    if "@" in remainder:
        remainder, digest = remainder.split("@", 1)
        if not DIGEST_RE.fullmatch(digest):
            raise InvalidImage(f"{name!r}: only sha256 digests are supported")
    last = remainder.rsplit("/", 1)[-1]
    if ":" in last:
        remainder, tag = remainder.rsplit(":", 1)
        if not TAG_RE.fullmatch(tag):
            raise InvalidImage(f"{name!r}: invalid tag {tag!r}")
    if len(remainder) > MAX_REPOSITORY_CHARS or not REPOSITORY_RE.fullmatch(remainder):
        raise InvalidImage(f"{name!r}: invalid repository name {remainder!r}")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return ImageRef(repository=remainder, tag=tag, digest=digest)

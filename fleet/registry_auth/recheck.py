"""How often a signing process rechecks the key ring on disk, and so what a rotation promises.

Each worker rechecks the ring (one ``stat``) at most this long after it last did, so a key
another process wrote signs on every server sharing the ring at most this long after it was
written, or from its own signing time if that is later. ``fleet keys rotate`` states this in its
help and its output; this module imports nothing so that the CLI can do so without loading the
server.
"""

from __future__ import annotations

RING_CHECK_INTERVAL_S = 1.0

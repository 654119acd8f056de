"""Why an envelope was refused: one class per reason, raised by ``envelope.open_envelope``.
The class name is the ``reason`` a device reports in its ``reject`` status message.

``open_envelope`` checks, in this order: size (``TooLarge``, ``Malformed``), magic
(``Malformed``), format (``UnsupportedFormat``), the signature (``BadSignature``), the header's
fields (``Malformed``), the device id (``WrongDevice``), the version against the last one
accepted (``StaleVersion``), decryption (``DecryptFailed``), then the plaintext (``Malformed``).
"""

from __future__ import annotations


class EnvelopeError(Exception):
    """An envelope was refused; the subclass says why."""


class Malformed(EnvelopeError):
    """Not an envelope of this format: truncated, trailing bytes, bad field, bad plaintext."""


class TooLarge(Malformed):
    """Larger than MAX_ENVELOPE_BYTES; refused before any parsing."""


class UnsupportedFormat(Malformed):
    """A format number this code does not know."""


class BadSignature(EnvelopeError):
    """Not signed by the server's key, or changed after signing."""


class WrongDevice(EnvelopeError):
    """Validly signed, but addressed to another device."""


class StaleVersion(EnvelopeError):
    """Validly signed for this device, but not newer than what it already holds: a replay."""


class DecryptFailed(EnvelopeError):
    """Signed and addressed correctly, but not sealed to this device's key."""

"""One ES256 token-signing key: an EC P-256 private key and its self-signed certificate.

The registry trusts the certificates in its ``rootcertbundle``. Distribution 2.8 finds the key
that signed a token from the JWT header: an ``x5c`` chain verified against the bundle (tried
first), or a ``kid`` that is the libtrust key id of a bundled certificate's public key.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fleet.domain.errors import ValidationError

CURVE_NAME = "P-256"
COORDINATE_BYTES = 32
SIGNING_ALGORITHM = "ES256"
ORGANIZATION = "fleet registry token signer"
# The registry checks an x5c certificate's validity period against its own clock.
CERTIFICATE_VALIDITY = timedelta(days=5 * 365)
CERTIFICATE_BACKDATE = timedelta(hours=1)
SERIAL_NUMBER_BITS = 159
LIBTRUST_KEY_ID_BYTES = 30  # 240 bits of the SHA-256
LIBTRUST_GROUP_LENGTH = 4
LIBTRUST_GROUP_SEPARATOR = ":"


def libtrust_key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """Docker libtrust's key id: SHA-256 of the DER SubjectPublicKeyInfo, first 240 bits,
    base32 without padding, in 12 groups of 4 joined by ``:``."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashlib.sha256(der).digest()[:LIBTRUST_KEY_ID_BYTES]
    encoded = base64.b32encode(digest).decode("ascii").rstrip("=")
    groups = [
        encoded[i : i + LIBTRUST_GROUP_LENGTH]
        for i in range(0, len(encoded), LIBTRUST_GROUP_LENGTH)
    ]
    return LIBTRUST_GROUP_SEPARATOR.join(groups)


def _base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class SigningKey:
    """Equal to another when the certificate is the same (private key objects never compare)."""

    private_key: ec.EllipticCurvePrivateKey = field(compare=False)
    certificate: x509.Certificate
    kid: str = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.private_key.curve, ec.SECP256R1):
            raise ValidationError("token signing keys must be EC P-256", code="InvalidKey")
        if self.certificate.public_key() != self.private_key.public_key():
            raise ValidationError(
                "the certificate does not belong to the private key", code="InvalidKey"
            )
        object.__setattr__(self, "kid", libtrust_key_id(self.private_key.public_key()))

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.private_key.public_key()

    @property
    def x5c(self) -> list[str]:
        """The JWT ``x5c`` header: the certificate, standard base64 of its DER."""
        return [self._certificate_b64]

    @cached_property
    def _certificate_b64(self) -> str:
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        return base64.b64encode(der).decode("ascii")

    def certificate_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")

    def private_key_pem(self) -> str:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")

    def jwk(self) -> dict[str, str]:
        numbers = self.public_key.public_numbers()
        return {
            "kty": "EC",
            "crv": CURVE_NAME,
            "x": _base64url(numbers.x.to_bytes(COORDINATE_BYTES, "big")),
            "y": _base64url(numbers.y.to_bytes(COORDINATE_BYTES, "big")),
            "kid": self.kid,
            "use": "sig",
            "alg": SIGNING_ALGORITHM,
        }

    @classmethod
    def from_pem(cls, private_key_pem: str, certificate_pem: str) -> SigningKey:
        private_key = serialization.load_pem_private_key(private_key_pem.encode(), None)
        if not isinstance(private_key, ec.EllipticCurvePrivateKey):
            raise ValidationError("token signing keys must be EC P-256", code="InvalidKey")
        return cls(private_key, x509.load_pem_x509_certificate(certificate_pem.encode()))


def generate_signing_key(now: datetime | None = None) -> SigningKey:
    """A fresh P-256 key with a self-signed certificate valid from shortly before ``now``.

    The certificate's common name is the key id, so a bundle can be read with ``openssl``.
    """
    issued = now or datetime.now(UTC)
    private_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, libtrust_key_id(private_key.public_key())),
        ]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(secrets.randbits(SERIAL_NUMBER_BITS) + 1)
        .not_valid_before(issued - CERTIFICATE_BACKDATE)
        .not_valid_after(issued + CERTIFICATE_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(private_key, hashes.SHA256())
    )
    return SigningKey(private_key, certificate)

"""Who may enroll a device: decided by the database, before the broker is touched.

Enrollment provisions a broker login outside any transaction, so two requests for one device
must not both reach the broker (the second password would replace the first, and the winner
would be locked out). Each request first *claims*, in a short transaction of conditional
writes committed before the broker call:

- a one-time code: ``UPDATE ... SET used_at WHERE id = ? AND used_at IS NULL``;
- a new device id: an ``INSERT`` of a row with the status ``enrolling`` (the unique index on
  ``devices.device_id`` lets one in);
- a device allowed to enroll again: ``UPDATE ... SET allow_reenroll = false WHERE
  allow_reenroll`` (and only while it is pending or active: a disabled device stays disabled).

SQLite runs one writer at a time, and the driver opens the transaction at the first write, so
the second claim sees the first one committed. PostgreSQL at READ COMMITTED makes the second
``UPDATE`` wait for the first and re-check its ``WHERE``, and the second ``INSERT`` of an id
wait and fail on the unique index. Either way exactly one request wins; the loser gets the
error a later request would get, and nothing it did remains. Only the winner provisions the
broker, then :func:`take` finds its claim intact (an operator may have disabled or deleted the
device meanwhile) and the enrollment is finished. A claim whose broker call or finish failed is
undone, so the code and the id can be tried again; one left by a server that died is taken over
by the next request once it is :data:`STALE_CLAIM` old.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from fleet.credentials import SecretHasher
from fleet.db.devices import (
    ACTIVE,
    CODE,
    DISABLED,
    ENROLLING,
    PENDING,
    Device,
    EnrollmentSecret,
)
from fleet.domain.errors import AuthenticationError, ConflictError

REENROLLABLE = (PENDING, ACTIVE)
# A claim this old was left by a server that died mid-enrollment (a live one finishes within
# its broker timeouts, seconds): the next request for the id takes it over.
STALE_CLAIM = timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class Claim:
    """What one enrollment request won; :func:`take` and :func:`undo` work from it."""

    device_id: str
    device_pk: int
    group_id: int
    via: str  # the kind of secret used: SECRET or CODE
    at: datetime  # written to enrolled_at (and used_at): how this claim is recognised
    new: bool  # the device row was inserted by this claim (else: an existing one re-enrolls)
    code_id: int | None
    enrolled_before: datetime | None = None  # an existing device's enrolled_at, for undo


def _invalid() -> AuthenticationError:
    return AuthenticationError(
        "the enrollment secret or code is not valid", code="InvalidEnrollmentSecret"
    )


def _exists(device_id: str) -> ConflictError:
    return ConflictError(
        f"device {device_id!r} is already enrolled; an operator must allow it to enroll again",
        code="DeviceExists",
    )


def find_secret(s: Session, hasher: SecretHasher, now: datetime, value: str) -> EnrollmentSecret:
    """The group secret or unused one-time code ``value`` is, valid at ``now``."""
    row = s.exec(
        select(EnrollmentSecret).where(EnrollmentSecret.secret_hash == hasher.hash(value))
    ).first()
    if (
        row is None
        or row.revoked_at is not None
        or (row.expires_at is not None and row.expires_at <= now)
        or (row.kind == CODE and row.used_at is not None)
    ):
        raise _invalid()
    return row


def claim(
    s: Session, entry: EnrollmentSecret, device_id: str, keys: tuple[str, str], now: datetime
) -> Claim:
    """Claim ``entry`` (when it is a one-time code) and the device, in ``s``.

    Raises the error a sequential loser gets: ``InvalidEnrollmentSecret`` for a code used
    meanwhile, ``DeviceExists`` for an id taken, ``DeviceDisabled`` for a disabled device. The
    caller commits ``s`` before it touches the broker. A new row holds the device's public
    ``keys`` (x25519, ed25519) already, so whatever is sealed to it meanwhile can be.
    """
    assert entry.id is not None
    code_id = None
    if entry.kind == CODE:
        used = s.exec(
            update(EnrollmentSecret)
            .where(
                col(EnrollmentSecret.id) == entry.id,
                col(EnrollmentSecret.used_at).is_(None),
                col(EnrollmentSecret.revoked_at).is_(None),
            )
            .values(used_at=now, used_by=device_id)
        )
        if used.rowcount != 1:
            raise _invalid()
        code_id = entry.id
    existing = s.exec(select(Device).where(Device.device_id == device_id)).first()
    if existing is None:
        return _claim_new(s, entry, device_id, keys, now, code_id)
    if existing.status == ENROLLING:
        if existing.enrolled_at is not None and now - existing.enrolled_at >= STALE_CLAIM:
            return _take_over(s, existing, entry, keys, now, code_id)
        raise ConflictError(
            f"device {device_id!r} is being enrolled by another request; if that enrollment "
            f"was interrupted, try again in {STALE_CLAIM.seconds // 60} minutes, or an "
            "operator may delete the device now",
            code="DeviceExists",
        )
    if not existing.allow_reenroll:
        raise _exists(device_id)
    if existing.status == DISABLED:
        raise ConflictError(
            f"device {device_id!r} is disabled and cannot enroll again until an operator "
            "enables it",
            code="DeviceDisabled",
        )
    won = s.exec(
        update(Device)
        .where(
            col(Device.id) == existing.id,
            col(Device.allow_reenroll).is_(True),
            col(Device.status).in_(REENROLLABLE),
        )
        .values(allow_reenroll=False, enrolled_at=now)
    )
    if won.rowcount != 1:  # another request re-enrolled it, or it was disabled, meanwhile
        raise _exists(device_id)
    assert existing.id is not None
    return Claim(
        device_id,
        existing.id,
        entry.group_id,
        entry.kind,
        now,
        False,
        code_id,
        existing.enrolled_at,
    )


def _claim_new(
    s: Session,
    entry: EnrollmentSecret,
    device_id: str,
    keys: tuple[str, str],
    now: datetime,
    code_id: int | None,
) -> Claim:
    row = Device(
        device_id=device_id,
        group_id=entry.group_id,
        status=ENROLLING,
        x25519_public=keys[0],
        ed25519_public=keys[1],
        mqtt_username=device_id,
        enrolled_at=now,
    )
    s.add(row)
    try:
        s.flush()
    except IntegrityError:  # the unique index: another request inserted this id first
        raise _exists(device_id) from None
    assert row.id is not None
    return Claim(device_id, row.id, entry.group_id, entry.kind, now, True, code_id)


def _take_over(
    s: Session,
    stale: Device,
    entry: EnrollmentSecret,
    keys: tuple[str, str],
    now: datetime,
    code_id: int | None,
) -> Claim:
    """A claim left by a server that died mid-enrollment, taken over so the device is not
    refused for good. Conditional on the stale claim's own time: of two requests taking it over
    at once one wins, and the dead request's :func:`take` (were it alive) would fail."""
    assert stale.id is not None
    won = s.exec(
        update(Device)
        .where(
            col(Device.id) == stale.id,
            col(Device.status) == ENROLLING,
            col(Device.enrolled_at) == stale.enrolled_at,
        )
        .values(
            enrolled_at=now,
            group_id=entry.group_id,
            x25519_public=keys[0],
            ed25519_public=keys[1],
        )
    )
    if won.rowcount != 1:
        raise _exists(stale.device_id)
    return Claim(stale.device_id, stale.id, entry.group_id, entry.kind, now, True, code_id)


def take(s: Session, claimed: Claim) -> Device:
    """The claimed device, locked in ``s`` for the rest of the enrollment.

    The first write of the transaction, so on SQLite it waits its turn and on PostgreSQL it
    holds the row. ``DeviceChanged`` when an operator disabled or deleted the device since the
    claim: the enrollment must not revive it.
    """
    where = [col(Device.id) == claimed.device_pk, col(Device.enrolled_at) == claimed.at]
    if claimed.new:
        where.append(col(Device.status) == ENROLLING)
    else:
        where += [col(Device.status).in_(REENROLLABLE), col(Device.allow_reenroll).is_(False)]
    held = s.exec(update(Device).where(*where).values(enrolled_at=claimed.at))
    if held.rowcount != 1:
        raise ConflictError(
            f"device {claimed.device_id!r} was changed by an operator while it enrolled "
            "(disabled or deleted); nothing was enrolled",
            code="DeviceChanged",
        )
    device = s.exec(
        select(Device)
        .where(col(Device.id) == claimed.device_pk)
        .execution_options(populate_existing=True)
    ).one()
    return device


def undo(s: Session, claimed: Claim) -> None:
    """Give back what ``claimed`` took, where it is still as the claim left it."""
    if claimed.code_id is not None:
        s.exec(
            update(EnrollmentSecret)
            .where(
                col(EnrollmentSecret.id) == claimed.code_id,
                col(EnrollmentSecret.used_at) == claimed.at,
                col(EnrollmentSecret.used_by) == claimed.device_id,
            )
            .values(used_at=None, used_by=None)
        )
    if claimed.new:
        s.exec(
            delete(Device).where(
                col(Device.id) == claimed.device_pk,
                col(Device.status) == ENROLLING,
                col(Device.enrolled_at) == claimed.at,
            )
        )
    else:
        s.exec(
            update(Device)
            .where(
                col(Device.id) == claimed.device_pk,
                col(Device.enrolled_at) == claimed.at,
                col(Device.allow_reenroll).is_(False),
            )
            .values(allow_reenroll=True, enrolled_at=claimed.enrolled_before)
        )

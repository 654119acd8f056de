"""Devices: enrollment, approval, disable and enable, delete, rotation and redelivery.

``DeviceService`` is the one facade the other layers call; its methods live by concern in the
modules of this package, each a part written against ``base.DeviceParts`` (the collaborators
and the row helpers they share):

- ``admission``: enroll, approve, reject, allow re-enrollment;
- ``lifecycle``: disable (one or a page), enable, delete;
- ``commands``: rotate, redeliver, pull;
- ``reads``: a page of the list, a group's approval queue, a device's scope map;
- ``base``: a device's row and view, show, touch, its token, a new password for it.

Broker calls (logins, publishing) happen outside database transactions: logins are created or
repaired idempotently before the rows that need them, and envelopes are published after the
transaction that queued them has committed. Where two requests could race to the broker, a
conditional write decides first which one goes (enrollment claims, see
``fleet.services.enrollment``; enable moves the row from disabled to active), and issuing locks
the device rows it writes.
"""

from __future__ import annotations

from fleet.services.devices.admission import DeviceAdmission
from fleet.services.devices.base import APPROVAL_QUEUE_PAGE, get_device, pending_counts
from fleet.services.devices.commands import DeviceCommands
from fleet.services.devices.lifecycle import MAX_BULK, DeviceLifecycle
from fleet.services.devices.reads import DeviceReads

__all__ = ["APPROVAL_QUEUE_PAGE", "MAX_BULK", "DeviceService", "get_device", "pending_counts"]


class DeviceService(DeviceAdmission, DeviceLifecycle, DeviceCommands, DeviceReads):
    """Every device operation, built once with its collaborators (``DeviceParts.__init__``)."""

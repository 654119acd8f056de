"""Reads of many devices: a page of the list, a group's approval queue, a device's map."""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import col, select

from fleet.db.devices import PENDING, Device, DeviceGroup
from fleet.db.models import ScopeMap
from fleet.domain.errors import NotFoundError
from fleet.services.device_list import DeviceQuery
from fleet.services.devices.base import (
    APPROVAL_QUEUE_PAGE,
    DeviceParts,
    get_device,
    make_view,
    pending_counts,
)
from fleet.services.paging import DEFAULT_LIMIT, Page, check_limit
from fleet.services.revocation import access_end
from fleet.services.views import ApprovalQueue, DeviceView, PendingDeviceView


class DeviceReads(DeviceParts):
    def list(
        self,
        query: DeviceQuery | None = None,
        *,
        group: str | None = None,
        status: str | None = None,
        limit: int = DEFAULT_LIMIT,
        cursor: str | None = None,
    ) -> Page[DeviceView]:
        """One page of devices: ``query`` (or just ``group`` and ``status``) says which and
        in which order (see ``device_list``). At most five statements a page, each on an
        index; an unknown group has no devices."""
        check_limit(limit)
        if query is None:
            query = DeviceQuery(group=group, status=status)
        with self.ctx.db.session() as s:
            rows, next_cursor = self.lister.rows(
                s,
                query,
                limit=limit,
                cursor=cursor,
                now=self.ctx.clock(),
                expiry_days=self.ctx.settings.expiry_warning_days,
            )
            pending = pending_counts(s, [d.id for d, *_ in rows if d.id is not None])
            now = self.ctx.clock()
            views = [
                make_view(d, g, t, pending.get(d.id, 0), access_end(ends, now))
                for d, g, t, ends in rows
            ]
            return Page(tuple(views), next_cursor)

    def approval_queue(self, group: str, *, limit: int = APPROVAL_QUEUE_PAGE) -> ApprovalQueue:
        """A group's first pending devices by id, and how many are pending: two queries."""
        with self.ctx.db.session() as s:
            group_id = s.exec(select(DeviceGroup.id).where(DeviceGroup.name == group)).first()
            if group_id is None:
                raise NotFoundError(f"device group {group!r} does not exist", code="GroupNotFound")
            pending = (Device.group_id == group_id, Device.status == PENDING)
            rows = s.exec(
                select(Device.device_id, Device.enrolled_at)
                .where(*pending)
                .order_by(col(Device.device_id))
                .limit(limit)
            ).all()
            total = s.exec(select(func.count()).select_from(Device).where(*pending)).one()
            return ApprovalQueue(tuple(PendingDeviceView(d, at) for d, at in rows), total)

    def scope_map_of(self, device_id: str) -> str | None:
        with self.ctx.db.session() as s:
            group = s.get(DeviceGroup, get_device(s, device_id).group_id)
            mapped = s.get(ScopeMap, group.scope_map_id) if group and group.scope_map_id else None
            return mapped.name if mapped else None

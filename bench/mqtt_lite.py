"""A minimal asyncio MQTT 3.1.1 client for holding thousands of simulated devices per process.

paho's threaded loop fails past a few hundred clients in one process (bench/README.md,
"Enrollment and delivery"); this speaks just what a simulated device needs, on one event loop:
CONNECT (username, password, clean session, no keep-alive), SUBSCRIBE at QoS 1, PUBLISH at
QoS 0 or 1 (with PUBACK for what it receives at QoS 1) and DISCONNECT. It is a benchmark tool,
not a product client: no reconnect, no will, no QoS 2, no session state.

Every length read from the wire is bounded by :data:`MAX_PACKET_BYTES`: a larger packet closes
the connection (a broker sending one is broken, and an unbounded buffer would hide it).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_PACKET_BYTES = 256 * 1024  # the broker's max_packet_size is 128 KiB
CONNECT_TIMEOUT_S = 30.0

CONNECT, CONNACK, PUBLISH, PUBACK = 0x10, 0x20, 0x30, 0x40
SUBSCRIBE, SUBACK, DISCONNECT = 0x82, 0x90, 0xE0
SUBACK_FAILURE = 0x80


class MqttError(RuntimeError):
    pass


def _string(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    if len(raw) > 0xFFFF:
        raise MqttError("an MQTT string holds at most 65,535 bytes")
    return struct.pack("!H", len(raw)) + raw


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _remaining_length(len(body)) + body


def connect_packet(client_id: str, username: str, password: str) -> bytes:
    flags = 0x80 | 0x40 | 0x02  # username, password, clean session
    variable = _string("MQTT") + bytes([4, flags]) + struct.pack("!H", 0)  # keep-alive off
    return packet(CONNECT, variable + _string(client_id) + _string(username) + _string(password))


def subscribe_packet(packet_id: int, topic: str, qos: int = 1) -> bytes:
    return packet(SUBSCRIBE, struct.pack("!H", packet_id) + _string(topic) + bytes([qos]))


def publish_packet(topic: str, payload: bytes, *, qos: int, packet_id: int = 0) -> bytes:
    body = _string(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload
    return packet(PUBLISH | (qos << 1), body)


def puback_packet(packet_id: int) -> bytes:
    return packet(PUBACK, struct.pack("!H", packet_id))


@dataclass
class Device:
    """One simulated device's connection; ``on_message(topic, payload)`` gets every PUBLISH."""

    client_id: str
    username: str
    password: str
    subscribe: str
    on_message: Callable[[Device, str, bytes], None]
    connected: asyncio.Future[None] | None = None
    subscribed: asyncio.Future[None] | None = None
    transport: asyncio.Transport | None = None
    sent_qos1: int = 0
    acked_qos1: int = 0
    closed: bool = False
    _buffer: bytearray = field(default_factory=bytearray)
    _next_id: int = 0

    def packet_id(self) -> int:
        self._next_id = self._next_id % 0xFFFF + 1
        return self._next_id

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        if self.transport is None or self.closed:
            return
        pid = self.packet_id() if qos else 0
        self.sent_qos1 += 1 if qos else 0
        self.transport.write(publish_packet(topic, payload, qos=qos, packet_id=pid))

    def disconnect(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(packet(DISCONNECT, b""))
            self.transport.close()


class _Protocol(asyncio.Protocol):
    def __init__(self, device: Device) -> None:
        self.device = device

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        d = self.device
        d.transport = transport
        transport.write(connect_packet(d.client_id, d.username, d.password))

    def connection_lost(self, exc: Exception | None) -> None:
        d = self.device
        d.closed = True
        for future in (d.connected, d.subscribed):
            if future is not None and not future.done():
                future.set_exception(MqttError(f"{d.client_id}: connection lost ({exc})"))

    def data_received(self, data: bytes) -> None:
        d = self.device
        buf = d._buffer
        buf += data
        while True:
            parsed = _split(buf)
            if parsed is None:
                return
            if parsed[0] < 0:
                assert d.transport is not None
                d.transport.close()
                return
            first, start, end = parsed
            self._packet(first, bytes(buf[start:end]))
            del buf[:end]

    def _packet(self, first: int, body: bytes) -> None:
        d = self.device
        kind = first & 0xF0
        if kind == PUBLISH:
            qos = (first >> 1) & 0x03
            (length,) = struct.unpack_from("!H", body)
            topic = body[2 : 2 + length].decode()
            at = 2 + length
            if qos:
                (pid,) = struct.unpack_from("!H", body, at)
                at += 2
                assert d.transport is not None
                d.transport.write(puback_packet(pid))
            d.on_message(d, topic, body[at:])
        elif kind == PUBACK:
            d.acked_qos1 += 1
        elif kind == CONNACK:
            code = body[1] if len(body) > 1 else 0xFF
            if d.connected is not None and not d.connected.done():
                if code == 0:
                    d.connected.set_result(None)
                else:
                    d.connected.set_exception(
                        MqttError(f"{d.client_id}: CONNACK refused with code {code}")
                    )
        elif kind == SUBACK:
            granted = body[2:]
            if d.subscribed is not None and not d.subscribed.done():
                if not granted or granted[0] == SUBACK_FAILURE:
                    d.subscribed.set_exception(MqttError(f"{d.client_id}: subscription refused"))
                else:
                    d.subscribed.set_result(None)


def _split(buf: bytearray) -> tuple[int, int, int] | None:
    """(first byte, body start, body end) of the first whole packet; None if incomplete;
    (-1, 0, 0) when the packet is malformed or over the bound."""
    if len(buf) < 2:
        return None
    length, multiplier, at = 0, 1, 1
    while True:
        if at >= len(buf):
            return None
        byte = buf[at]
        length += (byte & 0x7F) * multiplier
        at += 1
        if not byte & 0x80:
            break
        multiplier *= 128
        if at > 4:
            return (-1, 0, 0)
    if length > MAX_PACKET_BYTES:
        return (-1, 0, 0)
    if len(buf) < at + length:
        return None
    return buf[0], at, at + length


async def connect(device: Device, host: str, port: int, *, source: str | None = None) -> Device:
    """Connect, log in and subscribe; raises :class:`MqttError` on a refusal or a timeout."""
    loop = asyncio.get_running_loop()
    device.connected = loop.create_future()
    device.subscribed = loop.create_future()
    await loop.create_connection(
        lambda: _Protocol(device), host, port, local_addr=(source, 0) if source else None
    )
    try:
        await asyncio.wait_for(device.connected, CONNECT_TIMEOUT_S)
        assert device.transport is not None
        device.transport.write(subscribe_packet(device.packet_id(), device.subscribe))
        await asyncio.wait_for(device.subscribed, CONNECT_TIMEOUT_S)
    except TimeoutError:
        device.disconnect()
        raise MqttError(f"{device.client_id}: no answer within {CONNECT_TIMEOUT_S} s") from None
    return device

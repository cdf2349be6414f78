"""The kubelet's image pull: CRI `runtime.v1.ImageService/PullImage` over containerd's socket.

No generated stubs: the request is hand-encoded protobuf,
`PullImageRequest{image (1): ImageSpec{image (1): ref}}`, and the response
`PullImageResponse{image_ref (1): string}` is decoded by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

PULL_IMAGE = "/runtime.v1.ImageService/PullImage"
IMAGE_STATUS = "/runtime.v1.ImageService/ImageStatus"


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = 0
    value = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def decode_fields(data: bytes) -> dict[int, list[bytes | int]]:
    """Decode one level of a protobuf message: field number -> raw values."""
    fields: dict[int, list[bytes | int]] = {}
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        field, wire_type = key >> 3, key & 7
        value: bytes | int
        if wire_type == 0:
            value, pos = _read_varint(data, pos)
        elif wire_type == 2:
            length, pos = _read_varint(data, pos)
            value = data[pos : pos + length]
            pos += length
        elif wire_type == 1:
            value = int.from_bytes(data[pos : pos + 8], "little")
            pos += 8
        elif wire_type == 5:
            value = int.from_bytes(data[pos : pos + 4], "little")
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
        fields.setdefault(field, []).append(value)
    return fields


@dataclass(frozen=True)
class CriImage:
    """The fields of CRI's `Image` message that tests look at."""

    id: str
    repo_tags: list[str]
    repo_digests: list[str]
    size: int


def image_spec_request(ref: str) -> bytes:
    """`{image (1): ImageSpec{image (1): ref}}` — PullImageRequest and ImageStatusRequest."""
    return _length_delimited(1, _length_delimited(1, ref.encode()))


def _call(socket: Path, method: str, request: bytes, timeout: float) -> bytes:
    with grpc.insecure_channel(f"unix://{socket}") as channel:
        call = channel.unary_unary(
            method,
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        response: bytes = call(request, timeout=timeout)
        return response


def pull_image(socket: Path, ref: str, timeout: float = 120) -> str:
    """CRI PullImage; returns the `image_ref` containerd answers with (an image ID)."""
    response = _call(socket, PULL_IMAGE, image_spec_request(ref), timeout)
    values = decode_fields(response).get(1, [])
    if not values or not isinstance(values[0], bytes):
        raise AssertionError(f"PullImage response has no image_ref: {response!r}")
    return values[0].decode()


def image_status(socket: Path, ref: str, timeout: float = 30) -> CriImage | None:
    """CRI ImageStatus: `None` if the image is unknown."""
    response = _call(socket, IMAGE_STATUS, image_spec_request(ref), timeout)
    image = decode_fields(response).get(1)
    if not image or not isinstance(image[0], bytes):
        return None
    fields = decode_fields(image[0])

    def strings(field: int) -> list[str]:
        return [v.decode() for v in fields.get(field, []) if isinstance(v, bytes)]

    size = fields.get(4, [0])[0]
    return CriImage(
        id=(strings(1) or [""])[0],
        repo_tags=strings(2),
        repo_digests=strings(3),
        size=size if isinstance(size, int) else 0,
    )

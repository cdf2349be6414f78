"""A minimal HTTP/1.1 client that costs the machine as little as possible.

The benchmark client shares two cores with the server it measures, so it must not burn CPU:
request bodies go out with `sendfile` straight from a file (never copied into Python),
response bodies are read with `recv_into` into one reused buffer and only counted (small
bodies such as manifests can be kept). One parser (`ResponseParser`) is fed by a blocking
client (`Connection`, one stream) and by a `selectors` loop that drives many connections at
once from a single thread (`run_flows`), or from one process per CPU (`run_flows_parallel`),
the way wrk runs one thread per CPU, so that one client thread is not what is measured.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import queue as queue_module
import selectors
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable
    from multiprocessing.queues import Queue
    from multiprocessing.synchronize import Barrier

RECV_SIZE = 1 << 20

_HEAD, _BODY, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _DONE = range(7)


class Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...

    def hexdigest(self) -> str: ...

    def copy(self) -> Hasher: ...


class HTTPError(Exception):
    """A malformed response, an unexpected status or a connection that broke."""


@dataclass
class Response:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    received: int = 0  # body bytes received (kept or not)
    seconds: float = 0.0


class ResponseParser:
    """Incremental parser for one response (Content-Length or chunked bodies)."""

    def __init__(self, method: str, keep_body: bool = False, hasher: Hasher | None = None) -> None:
        self.method = method
        self.keep_body = keep_body
        self.hasher = hasher  # a hashlib object that sees the body, or None
        self.response = Response()
        self._state = _HEAD
        self._line = bytearray()
        self._body = bytearray()
        self._remaining = 0

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def _take_body(self, data: memoryview) -> None:
        self.response.received += len(data)
        if self.keep_body:
            self._body += data
        if self.hasher is not None:
            self.hasher.update(data)

    def _finish(self) -> None:
        self._state = _DONE
        self.response.body = bytes(self._body)

    def _start_body(self) -> None:
        head = bytes(self._line).decode("latin-1")
        self._line.clear()
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise HTTPError(f"bad status line {lines[0]!r}")
        self.response.status = int(parts[1])
        headers = self.response.headers
        for line in lines[1:]:
            if not line:
                continue
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        status = self.response.status
        if self.method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            self._finish()
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._state = _CHUNK_SIZE
        elif "content-length" in headers:
            self._remaining = int(headers["content-length"])
            self._state = _BODY if self._remaining else _DONE
            if not self._remaining:
                self._finish()
        else:
            raise HTTPError("response without Content-Length or chunked encoding")

    def _read_line(self, data: memoryview, pos: int) -> tuple[int, bool]:
        """Append bytes up to and including CRLF to the line buffer."""
        end = bytes(data[pos : pos + 4096]).find(b"\n")
        if end < 0:
            if len(data) - pos > 4096 or len(self._line) > 4096:
                raise HTTPError("chunk header line too long")
            self._line += data[pos:]
            return len(data), False
        self._line += data[pos : pos + end + 1]
        return pos + end + 1, True

    def feed(self, data: memoryview) -> int:
        """Consume bytes of this response; returns how many were used."""
        pos = 0
        size = len(data)
        while pos < size and self._state != _DONE:
            if self._state == _HEAD:
                chunk = bytes(data[pos:])
                start = max(0, len(self._line) - 3)
                self._line += chunk
                end = self._line.find(b"\r\n\r\n", start)
                if end < 0:
                    if len(self._line) > 65536:
                        raise HTTPError("response head too large")
                    return size
                extra = len(self._line) - (end + 4)
                del self._line[end + 4 :]
                pos = size - extra
                self._line = self._line[:end]
                self._start_body()
            elif self._state == _BODY:
                n = min(self._remaining, size - pos)
                self._take_body(data[pos : pos + n])
                pos += n
                self._remaining -= n
                if not self._remaining:
                    self._finish()
            elif self._state in (_CHUNK_SIZE, _CHUNK_END, _TRAILER):
                pos, complete = self._read_line(data, pos)
                if not complete:
                    continue
                line = bytes(self._line).strip()
                self._line.clear()
                if self._state == _CHUNK_SIZE:
                    length = int(line.split(b";")[0], 16)
                    if length:
                        self._remaining = length
                        self._state = _CHUNK_DATA
                    else:
                        self._state = _TRAILER
                elif self._state == _CHUNK_END:
                    self._state = _CHUNK_SIZE
                elif not line:  # the empty line after the (usually absent) trailers
                    self._finish()
            elif self._state == _CHUNK_DATA:
                n = min(self._remaining, size - pos)
                self._take_body(data[pos : pos + n])
                pos += n
                self._remaining -= n
                if not self._remaining:
                    self._state = _CHUNK_END
        return pos


def request_head(
    method: str, path: str, host: str, headers: dict[str, str] | None, length: int | None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "User-Agent: dockyard-bench"]
    for key, value in (headers or {}).items():
        lines.append(f"{key}: {value}")
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def location_path(location: str) -> str:
    """An upload Location as a path (Distribution's are absolute URLs, Dockyard's relative)."""
    if location.startswith(("http://", "https://")):
        rest = location.split("://", 1)[1]
        slash = rest.find("/")
        return rest[slash:] if slash >= 0 else "/"
    return location


def with_query(path: str, key: str, value: str) -> str:
    return f"{path}{'&' if '?' in path else '?'}{key}={value}"


@dataclass(frozen=True)
class FileBody:
    """Bytes [offset, offset+count) of the blob `file ++ suffix` (file sent with sendfile)."""

    file: BinaryIO
    file_size: int
    suffix: bytes
    offset: int
    count: int


class Connection:
    """One keep-alive connection, used from one thread."""

    def __init__(self, host: str, port: int, timeout: float = 120.0) -> None:
        self.host = f"{host}:{port}"
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = bytearray(RECV_SIZE)
        self._view = memoryview(self._buffer)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send_body(self, body: bytes | FileBody | None) -> None:
        if body is None:
            return
        if isinstance(body, bytes):
            self.sock.sendall(body)
            return
        in_file = max(0, min(body.count, body.file_size - body.offset))
        if in_file:
            sent = self.sock.sendfile(body.file, body.offset, in_file)
            if sent != in_file:
                raise HTTPError(f"sendfile sent {sent} of {in_file} bytes")
        rest = body.count - in_file
        if rest:
            start = max(0, body.offset - body.file_size)
            self.sock.sendall(body.suffix[start : start + rest])

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes | FileBody | None = None,
        keep_body: bool = True,
        hasher: Hasher | None = None,
    ) -> Response:
        length = None
        if body is not None:
            length = len(body) if isinstance(body, bytes) else body.count
        elif method in ("POST", "PUT", "PATCH"):
            length = 0
        started = time.perf_counter()
        self.sock.sendall(request_head(method, path, self.host, headers, length))
        self._send_body(body)
        parser = ResponseParser(method, keep_body, hasher)
        while not parser.done:
            n = self.sock.recv_into(self._buffer)
            if not n:
                raise HTTPError(f"connection closed during the response to {method} {path}")
            parser.feed(self._view[:n])
        parser.response.seconds = time.perf_counter() - started
        return parser.response


def expect(response: Response, status: int, what: str) -> Response:
    if response.status != status:
        raise HTTPError(
            f"{what}: expected {status}, got {response.status}: {response.body[:300]!r}"
        )
    return response


# -- many connections from one thread ---------------------------------------------------


@dataclass(frozen=True)
class Get:
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "GET"
    body: bytes = b""


@dataclass
class FlowResult:
    started: float = 0.0
    finished: float = 0.0
    received: int = 0
    statuses: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    digest: str | None = None
    error: str | None = None


class _Flow:
    def __init__(self, sock: socket.socket, host: str, requests: list[Get], hash_it: bool) -> None:
        self.sock = sock
        self.host = host
        self.requests = requests
        self.index = -1
        self.result = FlowResult()
        self.hasher: Hasher | None = hashlib.sha256() if hash_it else None
        self.parser: ResponseParser | None = None
        self.pending = b""
        self.sent_at = 0.0

    def next_request(self) -> bool:
        self.index += 1
        if self.index >= len(self.requests):
            return False
        req = self.requests[self.index]
        length = len(req.body) if req.method in ("POST", "PUT", "PATCH") else None
        last = self.index == len(self.requests) - 1
        self.pending = request_head(req.method, req.path, self.host, req.headers, length) + req.body
        self.parser = ResponseParser(req.method, False, self.hasher if last else None)
        self.sent_at = time.perf_counter()
        return True


def run_flows(
    host: str,
    port: int,
    flows: list[list[Get]],
    timeout: float,
    hash_first: bool = False,
    connected: Callable[[], None] | None = None,
) -> list[FlowResult]:
    """Run every flow (a list of requests on one keep-alive connection) at once.

    Connections are opened first (then `connected` is called, if given); the clock starts
    when the first requests go out. The first flow can hash the body of its last response
    (to check the bytes are right).
    """
    selector = selectors.DefaultSelector()
    buffer = bytearray(RECV_SIZE)
    view = memoryview(buffer)
    states: list[_Flow] = []
    for i, requests in enumerate(flows):
        sock = socket.create_connection((host, port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        states.append(_Flow(sock, f"{host}:{port}", requests, hash_first and i == 0))
    if connected is not None:
        connected()
    started = time.perf_counter()
    active = 0
    for flow in states:
        flow.result.started = started
        if flow.next_request():
            selector.register(flow.sock, selectors.EVENT_WRITE, flow)
            active += 1
        else:
            flow.result.finished = started
    deadline = started + timeout
    try:
        while active:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{active} of {len(states)} flows unfinished after {timeout}s")
            for key, events in selector.select(timeout=1.0):
                flow = key.data
                try:
                    if events & selectors.EVENT_WRITE and flow.pending:
                        sent = flow.sock.send(flow.pending)
                        flow.pending = flow.pending[sent:]
                        if not flow.pending:
                            selector.modify(flow.sock, selectors.EVENT_READ, flow)
                        continue
                    if not events & selectors.EVENT_READ:
                        continue
                    n = flow.sock.recv_into(buffer)
                    if not n:
                        raise HTTPError("connection closed by the server")
                    assert flow.parser is not None
                    flow.parser.feed(view[:n])
                    if flow.parser.done:
                        now = time.perf_counter()
                        response = flow.parser.response
                        flow.result.statuses.append(response.status)
                        flow.result.received += response.received
                        flow.result.latencies.append(now - flow.sent_at)
                        if flow.next_request():
                            selector.modify(flow.sock, selectors.EVENT_WRITE, flow)
                        else:
                            flow.result.finished = now
                            if flow.hasher is not None:
                                flow.result.digest = "sha256:" + flow.hasher.hexdigest()
                            selector.unregister(flow.sock)
                            active -= 1
                except (OSError, HTTPError) as exc:
                    flow.result.error = f"{type(exc).__name__}: {exc}"
                    flow.result.finished = time.perf_counter()
                    selector.unregister(flow.sock)
                    active -= 1
    finally:
        selector.close()
        for flow in states:
            flow.sock.close()
    return [flow.result for flow in states]


def _flows_process(
    host: str,
    port: int,
    flows: list[list[Get]],
    timeout: float,
    hash_first: bool,
    ready: Barrier,
    results: Queue[tuple[int, list[FlowResult] | str]],
    index: int,
) -> None:
    def connected() -> None:
        ready.wait(timeout)

    try:
        answer: list[FlowResult] | str = run_flows(
            host, port, flows, timeout, hash_first, connected=connected
        )
    except BaseException as exc:  # reported to the parent, which raises it
        ready.abort()
        answer = f"{type(exc).__name__}: {exc}"
    results.put((index, answer))


def client_processes() -> int:
    """One load-generating process per CPU this process may run on (as wrk's threads)."""
    return max(1, len(os.sched_getaffinity(0)))


def run_flows_parallel(
    host: str,
    port: int,
    flows: list[list[Get]],
    timeout: float,
    processes: int,
    hash_first: bool = False,
) -> list[FlowResult]:
    """run_flows with the flows dealt round-robin to `processes` processes.

    Every process opens its connections, then all start together; results come back in
    the order of `flows` (`started` and `finished` are comparable: perf_counter is the
    system's monotonic clock). One process runs in this one, as run_flows.
    """
    processes = max(1, min(processes, len(flows)))
    if processes == 1:
        return run_flows(host, port, flows, timeout, hash_first)
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Barrier(processes)
    queue: Queue[tuple[int, list[FlowResult] | str]] = ctx.Queue()
    shares = [flows[i::processes] for i in range(processes)]
    children = [
        ctx.Process(
            target=_flows_process,
            args=(host, port, share, timeout, hash_first and i == 0, ready, queue, i),
            daemon=True,
        )
        for i, share in enumerate(shares)
    ]
    for child in children:
        child.start()
    try:
        answers: dict[int, list[FlowResult] | str] = {}
        deadline = time.monotonic() + timeout + 60
        while len(answers) < processes:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"load processes did not finish within {timeout + 60:.0f}s")
            try:
                index, answer = queue.get(timeout=min(remaining, 1.0))
            except queue_module.Empty:
                dead = [c for c in children if c.exitcode not in (None, 0)]
                if dead:
                    raise HTTPError(
                        f"a load process exited with status {dead[0].exitcode}"
                    ) from None
                continue
            answers[index] = answer
    finally:
        for child in children:
            child.join(timeout=5)
            if child.is_alive():
                child.kill()
                child.join()
    failures = [a for a in answers.values() if isinstance(a, str)]
    if failures:
        raise HTTPError(f"a load process failed: {failures[0]}")
    ordered: list[FlowResult] = [FlowResult()] * len(flows)
    for i in range(processes):
        answer = answers[i]
        assert not isinstance(answer, str)
        for j, result in enumerate(answer):
            ordered[i + j * processes] = result
    return ordered

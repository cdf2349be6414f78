"""Atheris harness: the HTTP surface, in-process (fuzz/http_target.py).

Two applications built as `dockyard serve` builds them (one open, one with htpasswd users,
tokens and access rules), each over its own temporary root. Every input becomes one request
(method, path, query, headers, body) drawn from fuzz/http_target.py's vocabularies and from
raw fuzzed bytes; after each, HttpTarget.check asserts: no 5xx, the spec's JSON error body on
every application 4xx, no ERROR or traceback in the log, nothing written outside the root.

Run: .venv/bin/python fuzz/fuzz_http.py [-max_total_time=SECONDS] [-runs=N] [CORPUS_DIR ...]
"""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import quote

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with atheris.instrument_imports(include=["dockyard", "fuzz"]):
    from fuzz import http_target as ht

TARGETS: list[ht.HttpTarget] = []


def _text(provider: atheris.FuzzedDataProvider, limit: int) -> str:
    return provider.ConsumeUnicodeNoSurrogates(provider.ConsumeIntInRange(0, limit))


def _piece(provider: atheris.FuzzedDataProvider, vocabulary: tuple[str, ...]) -> str:
    """A vocabulary entry, or fuzzed text percent-encoded, or fuzzed text as it is."""
    kind = provider.ConsumeIntInRange(0, 3)
    if kind <= 1:
        return provider.PickValueInList(list(vocabulary))
    text = _text(provider, 24)
    if kind == 2:
        return quote(text, safe="")
    return "".join(c for c in text if "!" <= c <= "~" and c not in "?#")


def build_request(provider: atheris.FuzzedDataProvider) -> ht.HttpRequest:
    method = provider.PickValueInList(list(ht.METHODS))
    if provider.ConsumeIntInRange(0, 4) == 0:
        path = provider.PickValueInList(list(ht.OTHER_PATHS))
    else:
        parts = [_piece(provider, ht.NAME_PARTS) for _ in range(provider.ConsumeIntInRange(1, 4))]
        resource = provider.PickValueInList(list(ht.RESOURCES))
        path = ht.build_target(parts, resource, _piece(provider, ht.ARGUMENTS))
    query = ht.build_query(
        [
            (_piece(provider, ht.QUERY_KEYS), _piece(provider, ht.QUERY_VALUES))
            for _ in range(provider.ConsumeIntInRange(0, 3))
        ]
    )
    headers = []
    for _ in range(provider.ConsumeIntInRange(0, 4)):
        name = provider.PickValueInList(list(ht.HEADER_NAMES))
        if provider.ConsumeBool():
            value = provider.PickValueInList(list(ht.HEADER_VALUES))
        else:
            value = _text(provider, 40).replace("\r", "").replace("\n", "")
        headers.append((name, value))
    chunked = provider.ConsumeBool()
    kind = provider.ConsumeIntInRange(0, 3)
    if kind == 0:
        body = b""
    elif kind == 1:
        body = ht.manifest_body(
            provider.PickValueInList(["{config}", "{digest}", "sha256:" + "0" * 64]),
            ["{digest}"] * provider.ConsumeIntInRange(0, 2),
            provider.PickValueInList(["application/vnd.oci.image.manifest.v1+json", ""]),
        )
    else:
        body = provider.ConsumeBytes(provider.remaining_bytes())
    return ht.HttpRequest(method, path + query, tuple(headers), body, chunked)


def test_one_input(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    target = TARGETS[provider.ConsumeIntInRange(0, len(TARGETS) - 1)]
    target.check(build_request(provider))


if __name__ == "__main__":
    TARGETS.extend([ht.HttpTarget(auth=False).start(), ht.HttpTarget(auth=True).start()])
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()

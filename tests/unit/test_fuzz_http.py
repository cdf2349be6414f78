"""Property-based fuzzing of the HTTP surface, in-process (aiohttp's TestServer and
TestClient against `create_app` over a temporary root, built as `dockyard serve` builds it).

Random methods, paths (`..`, `%2f`, `%00`, very long names, unicode), query strings,
headers (Range, Content-Range, Content-Type, Accept, Authorization, ...) and bodies, with
and without authentication. After every request fuzz/http_target.py checks: never a 5xx,
every 4xx of the application has the spec's JSON error body, nothing logged at ERROR or
with a traceback, nothing written outside the storage root.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from fuzz import http_target as ht
from fuzz.http_target import HttpRequest, HttpTarget
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

SETTINGS = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def open_target() -> Iterator[HttpTarget]:
    with HttpTarget(auth=False) as target:
        yield target
        target.check_alive()


@pytest.fixture(scope="module")
def auth_target() -> Iterator[HttpTarget]:
    with HttpTarget(auth=True) as target:
        yield target
        target.check_alive()


# -- requests -----------------------------------------------------------------------------

# Arbitrary text, percent-encoded the way a client would put it in a path.
encoded_text = st.text(max_size=30).map(lambda t: quote(t, safe=""))
raw_piece = st.text(alphabet="abz09._-~!$&'()*+,;=:@%/", max_size=20)
name_parts = st.lists(
    st.one_of(st.sampled_from(ht.NAME_PARTS), encoded_text, raw_piece), min_size=1, max_size=4
)
arguments = st.one_of(st.sampled_from(ht.ARGUMENTS), encoded_text, raw_piece)
v2_paths = st.builds(ht.build_target, name_parts, st.sampled_from(ht.RESOURCES), arguments)
paths = st.one_of(v2_paths, st.sampled_from(ht.OTHER_PATHS), encoded_text.map(lambda t: "/" + t))
queries = st.lists(
    st.tuples(
        st.one_of(st.sampled_from(ht.QUERY_KEYS), encoded_text),
        st.one_of(st.sampled_from(ht.QUERY_VALUES), encoded_text, st.just("\0")),
    ),
    max_size=4,
).map(ht.build_query)
header_values = st.one_of(
    st.sampled_from(ht.HEADER_VALUES),
    st.text(alphabet=st.characters(exclude_characters="\r\n"), max_size=40),
)
headers = st.lists(st.tuples(st.sampled_from(ht.HEADER_NAMES), header_values), max_size=4).map(
    tuple
)
digest_refs = st.sampled_from(["{digest}", "{config}", "{manifest}", "sha256:" + "0" * 64])
bodies = st.one_of(
    st.just(b""),
    st.binary(max_size=300),
    st.builds(
        lambda config, layers, media_type: ht.manifest_body(config, layers, media_type),
        digest_refs,
        st.lists(digest_refs, max_size=3),
        st.sampled_from(["application/vnd.oci.image.manifest.v1+json", "x", ""]),
    ),
    st.just(b"grant_type=password&username=alice&password=wonderland&scope=registry:catalog:*"),
    st.just(b"layer"),
)
requests = st.builds(
    lambda method, path, query, hdrs, body, chunked: HttpRequest(
        method, path + query, hdrs, body, chunked
    ),
    st.sampled_from(ht.METHODS),
    paths,
    queries,
    headers,
    bodies,
    st.booleans(),
)

# Requests that once broke an invariant, and the attacks the hardening brief lists.
REGRESSIONS = [
    # 500: int() refused a 5000-digit Range position.
    HttpRequest(
        "GET", "/v2/library/seed/blobs/{digest}", (("Range", "bytes=" + "9" * 5000 + "-"),)
    ),
    # A plain-text 404 (not the spec's JSON) from the token endpoint without auth.
    HttpRequest("GET", "/dockyard/auth/token"),
    # 500s from the token endpoint: a multipart form without boundary, bytes not UTF-8.
    HttpRequest(
        "POST",
        "/dockyard/auth/token",
        (("Content-Type", "multipart/form-data"),),
        b"garbage",
    ),
    HttpRequest(
        "POST",
        "/dockyard/auth/token",
        (("Content-Type", "multipart/form-data; boundary=x"),),
        b"garbage",
    ),
    HttpRequest(
        "POST",
        "/dockyard/auth/token",
        (("Content-Type", "application/x-www-form-urlencoded"),),
        b"\xff=\xfe",
    ),
    # A traceback at ERROR in the log for a request that is not HTTP.
    HttpRequest("FOO", "/v2/"),
    # Traversal and friends.
    HttpRequest("GET", "/v2/a/../../../etc/passwd/manifests/latest"),
    HttpRequest("PUT", "/v2/..%2f..%2foutside/manifests/latest", body=b"{}"),
    HttpRequest("POST", "/v2/library/seed/blobs/uploads/..%2f..%2fmetadata.db?digest={digest}"),
    HttpRequest("PATCH", "/v2/library/seed/blobs/uploads/..%2f..%2foutside%2fsentinel", body=b"x"),
    HttpRequest("PUT", "/v2/library/seed/blobs/uploads/%2e%2e?digest={digest}", body=b"x"),
    HttpRequest("GET", "/v2/library/seed/blobs/sha256:..%2f..%2f..%2fmetadata.db"),
    HttpRequest("PUT", "/v2/library/seed/manifests/..%2f..%2fx", body=b"{}"),
    HttpRequest("PUT", "/v2/library/seed/manifests/%00", body=b"{}"),
    HttpRequest("DELETE", "/v2/library/seed/blobs/uploads/{upload}%00"),
    HttpRequest("GET", "/v2/" + "a/" * 200 + "tags/list"),
    HttpRequest("GET", "/v2/%F0%9F%90%B3/tags/list?n=" + "9" * 5000),
    # A dropped connection and a traceback: a control character in the name went into the
    # WWW-Authenticate challenge, and aiohttp refused to send the header.
    HttpRequest("GET", "/v2/%1F/manifests/latest"),
    HttpRequest("PUT", "/v2/a%0D%0AX-Injected:%20yes/manifests/latest", body=b"{}"),
    # aiohttp's plain-text 404: `.` in the route pattern did not match an encoded newline.
    HttpRequest("GET", "/v2/%0A/manifests/latest"),
    # aiohttp's plain-text 417 for an Expect other than 100-continue.
    HttpRequest("GET", "/v2/", (("Expect", "bytes=0-0"),)),
    # Bodies with a Content-Encoding, once decoded by aiohttp: a 500 when one did not decode,
    # a traceback when left unread, a request waiting forever when decoding failed after its
    # handler started (fuzz_http found that one). Now taken as sent.
    HttpRequest("PUT", "/v2/library/seed/manifests/x", (("Content-Encoding", "deflate"),), b"\6"),
    HttpRequest("GET", "/", (("Content-Encoding", "deflate"),), b"\6"),
    HttpRequest(
        "PATCH", "/v2/library/seed/blobs/uploads/{upload}", (("Content-Encoding", "gzip"),), b"x"
    ),
]


def _check(target: HttpTarget, request: HttpRequest) -> None:
    target.check(request)


@pytest.mark.parametrize("request_", REGRESSIONS, ids=lambda r: f"{r.method} {r.target[:40]}")
@pytest.mark.parametrize("auth", [False, True], ids=["open", "auth"])
def test_regressions(
    request_: HttpRequest, auth: bool, open_target: HttpTarget, auth_target: HttpTarget
) -> None:
    target = auth_target if auth else open_target
    for header in ((), (("Authorization", "Basic {basic}"),)):
        _check(target, HttpRequest(**{**request_.__dict__, "headers": request_.headers + header}))


@SETTINGS
@given(requests)
@example(HttpRequest("GET", "/v2/library/seed/blobs/{digest}", (("Range", "bytes=-0"),)))
@example(
    HttpRequest("PATCH", "/v2/library/seed/blobs/uploads/{upload}", (("Content-Range", "5-1"),))
)
def test_open_registry(open_target: HttpTarget, request: HttpRequest) -> None:
    open_target.check(request)


@SETTINGS
@given(requests)
@example(HttpRequest("GET", "/v2/_catalog", (("Authorization", "Bearer {token}"),)))
@example(HttpRequest("GET", "/v2/", (("Authorization", "Basic {wrong}"),)))
def test_registry_with_authentication(auth_target: HttpTarget, request: HttpRequest) -> None:
    auth_target.check(request)


@SETTINGS
@given(
    st.sampled_from(["PUT", "PATCH", "POST"]),
    st.sampled_from(["{upload}", "new"]),
    st.lists(st.tuples(st.sampled_from(["Content-Range", "Content-Type"]), header_values)),
    st.binary(max_size=64),
    st.booleans(),
)
def test_upload_sessions(
    open_target: HttpTarget,
    method: str,
    session: str,
    extra: list[tuple[str, str]],
    body: bytes,
    chunked: bool,
) -> None:
    """Deep into the upload code: real sessions, real digests, hostile ranges."""
    if session == "new":
        started = open_target.check(HttpRequest("POST", f"/v2/{ht.SEED_REPO}/blobs/uploads/"))
        assert started is not None and started.status == 202
        session = started.headers["Location"].rsplit("/", 1)[-1]
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    target = f"/v2/{ht.SEED_REPO}/blobs/uploads/{session}"
    if method != "PATCH":
        target += f"?digest={digest}"
    if method == "POST":
        target = f"/v2/{ht.SEED_REPO}/blobs/uploads/?digest={digest}"
    open_target.check(HttpRequest(method, target, tuple(extra), body, chunked))


def test_valid_pushes_still_work(open_target: HttpTarget) -> None:
    """The fuzzed server is still a registry: a manifest pushed now reads back."""
    manifest = ht.manifest_body(open_target.values["config"], [open_target.values["digest"]])
    headers = (("Content-Type", "application/vnd.oci.image.manifest.v1+json"),)
    pushed = open_target.check(
        HttpRequest("PUT", f"/v2/{ht.SEED_REPO}/manifests/after-fuzz", headers, manifest)
    )
    if pushed is not None and pushed.status == 404:
        pytest.fail(f"the seed blobs are gone: {json.loads(pushed.body)}")
    assert pushed is not None and pushed.status == 201, pushed
    read = open_target.check(HttpRequest("GET", f"/v2/{ht.SEED_REPO}/manifests/after-fuzz"))
    assert read is not None and read.body == manifest


@pytest.mark.parametrize(
    ("request_", "status", "code"),
    [
        (HttpRequest("GET", "/v2/%1F/manifests/latest"), 400, "NAME_INVALID"),
        (HttpRequest("GET", "/v2/%0A/manifests/latest"), 404, "UNSUPPORTED"),
        (HttpRequest("GET", "/dockyard/auth/token"), 404, "UNSUPPORTED"),
        (
            HttpRequest(
                "PUT",
                "/v2/library/seed/manifests/x",
                (("Content-Encoding", "deflate"), ("Authorization", "Basic {basic}")),
                b"\6",
            ),
            400,
            "MANIFEST_INVALID",
        ),
    ],
    ids=["control-character-in-name", "encoded-newline", "no-token-service", "content-encoding"],
)
def test_hostile_requests_get_the_right_error(
    auth_target: HttpTarget, request_: HttpRequest, status: int, code: str
) -> None:
    target = auth_target
    if request_.target.startswith("/dockyard/auth/token"):
        with HttpTarget(auth=False) as target:
            answer = target.check(request_)
    else:
        answer = target.check(request_)
    assert answer is not None and answer.status == status, answer
    assert json.loads(answer.body)["errors"][0]["code"] == code


def test_an_unknown_expectation_is_ignored(open_target: HttpTarget) -> None:
    answer = open_target.check(HttpRequest("GET", "/v2/", (("Expect", "something"),)))
    assert answer is not None and answer.status == 200, answer


def test_an_empty_blob_pushed_in_two_requests(open_target: HttpTarget) -> None:
    # Regression: POST then PUT without a body left no staging file, and the PUT was a 500.
    started = open_target.check(HttpRequest("POST", f"/v2/{ht.SEED_REPO}/blobs/uploads/"))
    assert started is not None
    empty = "sha256:" + hashlib.sha256(b"").hexdigest()
    done = open_target.check(HttpRequest("PUT", f"{started.headers['Location']}?digest={empty}"))
    assert done is not None and done.status == 201, done
    blob = open_target.check(HttpRequest("GET", f"/v2/{ht.SEED_REPO}/blobs/{empty}"))
    assert blob is not None and blob.status == 200 and blob.body == b""


def test_bodies_are_taken_as_sent(open_target: HttpTarget) -> None:
    """No Content-Encoding decoding (as Distribution): 10 kB of gzip stay 10 kB, not 10 MB."""
    compressed = gzip.compress(b"a" * 10_000_000)
    started = open_target.check(HttpRequest("POST", f"/v2/{ht.SEED_REPO}/blobs/uploads/"))
    assert started is not None
    location = started.headers["Location"]
    for chunked in (False, True):
        patched = open_target.check(
            HttpRequest("PATCH", location, (("Content-Encoding", "gzip"),), compressed, chunked)
        )
        assert patched is not None and patched.status == 202, patched
    assert patched.headers["Range"] == f"0-{2 * len(compressed) - 1}"

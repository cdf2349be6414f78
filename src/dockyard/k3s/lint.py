"""`dockyard k3s lint`: registries.yaml checked against what K3s and containerd really do.

K3s reads the file leniently and fails quietly, so each check here is a way a node ends up
pulling from the internet (or from nowhere) without an error anyone sees. Findings carry
the 1-based line and column of the offending character, why it matters, and the fix.
Pure: the only outside knowledge is `file_exists`, for the ca/cert/key paths.

Codes (error unless marked): yaml-syntax, unquoted-wildcard, tab (warning outside the
indentation), invisible-character (w), byte-order-mark (w), multiple-documents (w),
unknown-key, wrong-type, duplicate-key (w), registry-level-missing, invalid-mirror-key,
mirror-key-scheme, mirror-key-path, empty-mirror (w), invalid-endpoint,
endpoint-without-scheme (w), endpoint-path (w), duplicate-endpoint (w), rewrite-quoting,
config-key-scheme, config-for-upstream (w when it is only credentials),
config-host-mismatch (w), tls-on-http (w), cert-without-key, missing-file,
relative-path (w), incomplete-auth (w).
"""

from __future__ import annotations

import posixpath
import unicodedata
from collections.abc import Callable
from dataclasses import replace

import yaml

from dockyard.k3s.endpoint import EndpointError, NormalizedEndpoint, normalize_endpoint, parse_url
from dockyard.k3s.findings import Finding, sort_findings
from dockyard.k3s.lint_checks import check_config
from dockyard.k3s.lint_schema import Located, MirrorEntry, Walked, walk
from dockyard.k3s.model import WILDCARD, position

# Characters that look like nothing (or like a space) but change what K3s reads.
_INVISIBLE = {0x00A0, 0x00AD, 0x180E, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000, 0xFEFF}
_INVISIBLE |= set(range(0x2000, 0x200B))  # en quad .. hair space
_INVISIBLE |= set(range(0x200B, 0x2010))  # zero-width space/joiners, LRM, RLM
_INVISIBLE |= set(range(0x202A, 0x202F)) | set(range(0x2060, 0x2065)) | set(range(0x2066, 0x206A))
_SCHEMA_FIELDS = {"endpoint", "rewrite", "auth", "tls", "mirrors", "configs"}


def _char_findings(text: str) -> list[Finding]:
    findings: list[Finding] = []
    for line_number, line in enumerate(text.split("\n"), start=1):
        tab_seen = False
        for column, char in enumerate(line, start=1):
            code = ord(char)
            if char == "\t" and not tab_seen:
                tab_seen = True
                indentation = line[: column - 1].strip(" \t-") == ""
                findings.append(
                    Finding(
                        "tab",
                        "error" if indentation else "warning",
                        line_number,
                        column,
                        "tab character" + (" in the indentation" if indentation else ""),
                        "YAML forbids tabs for indentation: K3s cannot parse the file and "
                        "starts without any registry configuration."
                        if indentation
                        else "A tab outside quotes becomes part of the value or breaks the "
                        "YAML; K3s then reads something other than what the editor shows.",
                        "replace the tab with spaces (two per level).",
                    )
                )
            elif code == 0xFEFF and line_number == 1 and column == 1:
                findings.append(
                    Finding(
                        "byte-order-mark",
                        "warning",
                        1,
                        1,
                        "the file starts with a byte order mark (U+FEFF)",
                        "K3s skips it, but diff, grep and configuration tools see a stray "
                        "invisible character before the first key.",
                        "save the file as UTF-8 without BOM.",
                    )
                )
            elif code in _INVISIBLE:
                name = unicodedata.name(char, f"U+{code:04X}").lower()
                findings.append(
                    Finding(
                        "invisible-character",
                        "warning",
                        line_number,
                        column,
                        f"invisible character U+{code:04X} ({name})",
                        "It looks like a space or nothing, but K3s reads it as part of the "
                        "key or value: a registry name or host with it never matches what "
                        "containerd looks up, and it is not indentation.",
                        "delete it (retype the line if in doubt).",
                    )
                )
    return findings


def _char_at(text: str, mark: yaml.Mark | None) -> str:
    if mark is None or not 0 <= mark.index < len(text):
        return ""
    return text[mark.index]


def _with_syntax_error(text: str, exc: yaml.YAMLError, earlier: list[Finding]) -> list[Finding]:
    """The character findings plus the syntax error, or the character finding that caused it
    raised to an error."""
    mark = getattr(exc, "problem_mark", None)
    if _char_at(text, mark) == "\t" or ord(_char_at(text, mark) or "a") in _INVISIBLE:
        assert mark is not None
        for index, finding in enumerate(earlier):
            same_place = finding.column == mark.column + 1 or finding.code == "tab"
            if finding.line == mark.line + 1 and same_place:
                if finding.severity == "error":
                    return earlier  # it already says the file does not parse
                raised = replace(
                    finding,
                    severity="error",
                    explanation=finding.explanation + " Here it also makes the file invalid "
                    "YAML: K3s cannot parse it and starts without any registry configuration.",
                )
                return [*earlier[:index], raised, *earlier[index + 1 :]]
    return earlier + _syntax_findings(text, exc)


def _syntax_findings(text: str, exc: yaml.YAMLError) -> list[Finding]:
    if isinstance(exc, yaml.reader.ReaderError):
        before = text[: exc.position]
        line = before.count("\n") + 1
        column = exc.position - (before.rfind("\n") + 1) + 1
        return [
            Finding(
                "yaml-syntax",
                "error",
                line,
                column,
                f"character U+{exc.character:04X} is not allowed in YAML"
                if isinstance(exc.character, int)
                else str(exc),
                "K3s cannot parse the file and starts without any registry configuration.",
                "delete the character.",
            )
        ]
    if not isinstance(exc, yaml.MarkedYAMLError):
        return [Finding("yaml-syntax", "error", 1, 1, str(exc), "", "fix the YAML.")]
    for mark in (exc.context_mark, exc.problem_mark):
        if _char_at(text, mark) == "*" and mark is not None:
            return [
                Finding(
                    "unquoted-wildcard",
                    "error",
                    mark.line + 1,
                    mark.column + 1,
                    "unquoted * (YAML reads it as an alias)",
                    "In YAML a bare * starts an alias to an anchor, so the file does not "
                    "parse (or means something else) and K3s starts without any registry "
                    "configuration.",
                    'quote it: "*"',
                )
            ]
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = exc.problem or "invalid YAML"
    context = f" ({exc.context})" if exc.context else ""
    return [
        Finding(
            "yaml-syntax",
            "error",
            line,
            column,
            f"YAML syntax error: {problem}{context}",
            "K3s cannot parse the file and starts without any registry configuration.",
            "fix the YAML at this position (indentation, a missing colon or quote).",
        )
    ]


# -- mirrors ---------------------------------------------------------------------------------


def _check_mirror_key(walked: Walked, mirror: MirrorEntry) -> None:
    name = mirror.name
    if name == WILDCARD:
        return
    if name in _SCHEMA_FIELDS:
        walked.add(
            mirror.key,
            "registry-level-missing",
            "error",
            f'"{name}" is directly under mirrors:',
            f'K3s reads it as a registry named "{name}", so no real registry is mirrored.',
            'put the registry name in between: mirrors: -> "docker.io": -> endpoint: [...]',
        )
        return
    if not name.strip() or name != name.strip():
        walked.add(
            mirror.key,
            "invalid-mirror-key",
            "error",
            f'mirror key "{name}" is empty or has surrounding spaces',
            "containerd looks registries up by their exact name; this key matches none.",
            'use the registry name, e.g. "docker.io".',
        )
        return
    if "://" in name:
        host = name.split("://", 1)[1].split("/", 1)[0]
        walked.add(
            mirror.key,
            "mirror-key-scheme",
            "error",
            f'mirror key "{name}" has a scheme',
            f"A mirror key is the registry name as it appears in image references. K3s "
            f"writes it to certs.d/{posixpath.normpath(name)}/, which containerd never "
            f"reads (it looks in certs.d/{host}/), so the mirror is ignored.",
            f'use "{host}" as the key; the scheme belongs in the endpoint URLs.',
        )
    elif "/" in name:
        host = name.split("/", 1)[0]
        walked.add(
            mirror.key,
            "mirror-key-path",
            "error",
            f'mirror key "{name}" has a path',
            f"containerd picks mirrors by registry host only (certs.d/{host}/); a key with "
            "a path is never used.",
            f'use "{host}" as the key; put a path in the endpoint URL or use rewrite:.',
        )


def _check_endpoint(walked: Walked, mirror: MirrorEntry, ep: Located) -> NormalizedEndpoint | None:
    where = f'mirrors."{mirror.name}".endpoint'

    def invalid(reason: str) -> None:
        walked.add(
            ep.node,
            "invalid-endpoint",
            "error",
            f'endpoint "{ep.value}" is not a usable URL: {reason}',
            "K3s skips an endpoint it cannot use (it only logs a warning), so pulls never go "
            "there.",
            'write it as "http://HOST:PORT" or "https://HOST[:PORT]".',
        )

    if not ep.value.strip():
        invalid("it is empty")
        return None
    try:
        normalized = normalize_endpoint(ep.value)
        scheme = parse_url(ep.value).scheme if normalized.scheme_given else ""
    except EndpointError as exc:
        invalid(str(exc))
        return None
    if normalized.scheme_given and scheme not in ("http", "https"):
        invalid(f"containerd speaks only http and https, not {scheme}")
        return None
    if not normalized.url.host:
        invalid("it has no host")
        return None
    if not normalized.scheme_given:
        url = normalized.url
        why = (
            "plain http, because it is a loopback address on a port other than 443"
            if url.scheme == "http"
            else "https, because only loopback addresses default to http"
        )
        walked.add(
            ep.node,
            "endpoint-without-scheme",
            "warning",
            f'endpoint "{ep.value}" in {where} has no scheme',
            f"containerd will use {url} ({why}). A mirror serving plain HTTP on a "
            "NodePort or DNS name then fails its TLS handshake and nodes fall back to the "
            "upstream.",
            f'write the scheme: "http://{ep.value}" (plain HTTP) or "https://{ep.value}".',
        )
    path = normalized.url.path
    if normalized.override_path and not path.rstrip("/").endswith("/v2"):
        walked.add(
            ep.node,
            "endpoint-path",
            "warning",
            f'endpoint "{ep.value}" has the path {path}',
            f"K3s sets override_path, so containerd sends requests to {path}/<name>/"
            "manifests/... instead of /v2/<name>/...; few registries answer there.",
            "drop the path (K3s adds /v2 itself) unless the registry serves its API there.",
        )
    return normalized


def _check_mirror(walked: Walked, mirror: MirrorEntry) -> list[tuple[NormalizedEndpoint, Located]]:
    _check_mirror_key(walked, mirror)
    if not mirror.endpoints and not mirror.has_problems:
        walked.add(
            mirror.key,
            "empty-mirror",
            "warning",
            f'mirror "{mirror.name}" has no endpoint',
            "K3s writes no hosts.toml for it, so pulls go straight to the registry itself.",
            'add endpoint: ["http://HOST:PORT"] or remove the entry.',
        )
    kept: list[tuple[NormalizedEndpoint, Located]] = []
    seen: dict[str, Located] = {}
    for ep in mirror.endpoints:
        normalized = _check_endpoint(walked, mirror, ep)
        if normalized is None:
            continue
        url = str(normalized.url)
        if url in seen:
            first = position(seen[url].node)[0]
            walked.add(
                ep.node,
                "duplicate-endpoint",
                "warning",
                f'endpoint "{ep.value}" repeats {url} (line {first})',
                "K3s keeps only the first of endpoints that normalize to the same URL.",
                "remove the duplicate.",
            )
            continue
        seen[url] = ep
        kept.append((normalized, ep))
    for pattern, replacement in mirror.rewrites:
        for part in (pattern, replacement):
            if '"' in part.value or "\\" in part.value:
                walked.add(
                    part.node,
                    "rewrite-quoting",
                    "error",
                    f'rewrite "{part.value}" contains " or \\',
                    "K3s copies rewrite patterns into hosts.toml without escaping them; "
                    "containerd then cannot parse the file and ignores the whole mirror.",
                    "avoid backslashes and quotes: use [.] instead of \\. in patterns.",
                )
    return kept


# -- entry -----------------------------------------------------------------------------------


def lint_registries(text: str, file_exists: Callable[[str], bool] | None = None) -> list[Finding]:
    """All findings for a registries.yaml text, sorted by position."""
    findings = _char_findings(text)
    try:
        documents = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as exc:
        return sort_findings(_with_syntax_error(text, exc, findings))
    except RecursionError:
        deep = Finding(
            "yaml-syntax",
            "error",
            1,
            1,
            "the YAML is nested too deeply to read",
            "registries.yaml needs a few levels (mirrors, configs and their fields); a "
            "document nested hundreds of levels deep is not one.",
            "remove the nesting.",
        )
        return sort_findings([*findings, deep])
    for extra in documents[1:]:
        line, column = position(extra)
        findings.append(
            Finding(
                "multiple-documents",
                "warning",
                line,
                column,
                "a second YAML document (after ---)",
                "K3s reads only the first document; everything after --- is ignored.",
                "merge the documents into one and remove the --- separator.",
            )
        )
    walked = walk(documents[0]) if documents and documents[0] is not None else Walked()
    endpoints: dict[str, list[tuple[NormalizedEndpoint, MirrorEntry]]] = {}
    for mirror in walked.mirrors:
        for normalized, _ep in _check_mirror(walked, mirror):
            endpoints.setdefault(normalized.registry, []).append((normalized, mirror))
    for config in walked.configs:
        check_config(walked, config, endpoints, file_exists)
    return sort_findings(findings + walked.findings)

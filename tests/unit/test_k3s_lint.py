"""`dockyard k3s lint`: one test per mistake, each pinned to its line, column and code."""

from __future__ import annotations

import pytest

from dockyard.k3s.findings import Finding, format_json, format_text
from dockyard.k3s.lint import lint_registries

GOOD = """\
mirrors:
  "docker.io":
    endpoint:
      - "http://127.0.0.1:30500"
  "*":
    endpoint:
      - "https://dockyard.example.com"
configs:
  "dockyard.example.com":
    auth:
      username: "mirror"
      password: "secret"
    tls:
      ca_file: "/etc/dockyard/ca.crt"
"""


def lint(text: str, existing: tuple[str, ...] = ()) -> list[Finding]:
    return lint_registries(text, file_exists=lambda path: path in existing)


def only(text: str, code: str, existing: tuple[str, ...] = ()) -> Finding:
    """The single finding of a text, which must have this code."""
    findings = lint(text, existing)
    assert [f.code for f in findings] == [code], findings
    finding = findings[0]
    assert finding.message and finding.explanation and finding.fix
    return finding


def at(finding: Finding) -> tuple[int, int, str]:
    return finding.line, finding.column, finding.severity


def test_a_good_file_is_clean() -> None:
    assert lint(GOOD, existing=("/etc/dockyard/ca.crt",)) == []
    assert lint("") == []


# -- YAML itself ---------------------------------------------------------------------------


def test_yaml_syntax_error() -> None:
    finding = only('mirrors:\n  docker.io:\n    endpoint: ["http://h:1"\n', "yaml-syntax")
    assert at(finding) == (4, 1, "error")
    assert "expected ',' or ']'" in finding.message


def test_unquoted_wildcard_as_key() -> None:
    finding = only('mirrors:\n  *:\n    endpoint: ["http://h:1"]\n', "unquoted-wildcard")
    assert at(finding) == (2, 3, "error")
    assert finding.fix == 'quote it: "*"'


def test_unquoted_wildcard_as_value() -> None:
    assert at(only("mirrors:\n  docker.io:\n    endpoint:\n      - *\n", "unquoted-wildcard")) == (
        4,
        9,
        "error",
    )
    # `*name` is an alias to an anchor that does not exist
    assert at(only("mirrors:\n  *docker:\n", "unquoted-wildcard"))[:2] == (2, 3)


def test_tab_in_indentation() -> None:
    finding = only('mirrors:\n\tdocker.io:\n    endpoint: ["http://h:1"]\n', "tab")
    assert at(finding) == (2, 1, "error")


def test_tab_inside_a_value() -> None:
    text = 'mirrors:\n  docker.io:\n    endpoint: ["http://h:1"]\nconfigs:\n  "h:1":\n' + (
        '    auth: {username: "a\tb", password: p}\n'
    )
    assert at(only(text, "tab")) == (6, 24, "warning")


def test_zero_width_space_in_a_registry_name() -> None:
    text = 'mirrors:\n  "docker.io\u200b":\n    endpoint: ["http://127.0.0.1:30500"]\n'
    finding = only(text, "invisible-character")
    assert at(finding) == (2, 13, "warning")
    assert "U+200B" in finding.message


def test_no_break_space_that_breaks_the_yaml() -> None:
    text = 'mirrors:\n  docker.io:\n    endpoint: ["http://127.0.0.1:30500"]\u00a0\n'
    finding = only(text, "invisible-character")
    assert at(finding) == (3, 41, "error")
    assert "invalid YAML" in finding.explanation


def test_no_break_space_as_indentation_is_parsed_oddly() -> None:
    # YAML does not take U+00A0 for a space: "docker.io" becomes a top-level key.
    text = 'mirrors:\n\u00a0 docker.io:\n    endpoint: ["http://127.0.0.1:30500"]\n'
    findings = lint(text)
    assert [(f.code, f.line, f.column, f.severity) for f in findings] == [
        ("invisible-character", 2, 1, "warning"),
        ("unknown-key", 2, 1, "error"),
    ]


def test_byte_order_mark() -> None:
    text = '\ufeffmirrors:\n  docker.io:\n    endpoint: ["http://127.0.0.1:30500"]\n'
    assert at(only(text, "byte-order-mark")) == (1, 1, "warning")


def test_second_document_is_ignored_by_k3s() -> None:
    text = 'mirrors:\n  docker.io:\n    endpoint: ["http://h:1"]\n---\nconfigs: {}\n'
    assert at(only(text, "multiple-documents")) == (5, 1, "warning")


def test_duplicate_key() -> None:
    text = (
        'mirrors:\n  docker.io:\n    endpoint: ["http://h:1"]\n'
        '  docker.io:\n    endpoint: ["http://h:2"]\n'
    )
    finding = only(text, "duplicate-key")
    assert at(finding) == (4, 3, "warning")
    assert "line 2" in finding.message


# -- schema --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "column", "suggestion"),
    [
        ('mirror:\n  docker.io:\n    endpoint: ["http://h:1"]\n', 1, 1, '"mirrors"'),
        ('mirrors:\n  docker.io:\n    endpoints: ["http://h:1"]\n', 3, 5, '"endpoint"'),
        (
            'mirrors:\n  docker.io:\n    endpoint: ["http://h:1"]\n    rewrites: {}\n',
            4,
            5,
            "rewrite",
        ),
        ("configs:\n  h:\n    TLS:\n      ca_file: /ca\n", 3, 5, '"tls"'),
        (
            "configs:\n  h:\n    tls:\n      insecureskipverify: true\n",
            4,
            7,
            "insecure_skip_verify",
        ),
        ("configs:\n  h:\n    tls:\n      ca-file: /ca\n", 4, 7, '"ca_file"'),
        ("configs:\n  h:\n    auth:\n      user: bob\n", 4, 7, '"username"'),
        ("configs:\n  h:\n    auth:\n      identitytoken: t\n", 4, 7, '"identity_token"'),
    ],
)
def test_unknown_key_with_did_you_mean(text: str, line: int, column: int, suggestion: str) -> None:
    finding = only(text, "unknown-key")
    assert at(finding) == (line, column, "error")
    assert f"did you mean {suggestion}" in finding.fix or suggestion in finding.fix


def test_known_key_at_the_wrong_level() -> None:
    text = 'mirrors:\n  docker.io:\n    endpoint: ["http://h:1"]\n    tls: {}\n'
    finding = only(text, "unknown-key")
    assert at(finding) == (4, 5, "error")
    assert "belongs under configs.<host>" in finding.fix


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ('mirrors:\n  docker.io:\n    endpoint: "http://h:1"\n', 3, 15),
        ("mirrors: [docker.io]\n", 1, 10),
        ('mirrors:\n  docker.io: "http://h:1"\n', 2, 14),
        ("mirrors:\n  docker.io:\n    endpoint:\n      - {url: x}\n", 4, 9),
        ('mirrors:\n  docker.io:\n    endpoint: ["http://h:1"]\n    rewrite: [a]\n', 4, 14),
        ('configs:\n  "h:1":\n    tls:\n      insecure_skip_verify: "true"\n', 4, 29),
        ('configs:\n  "h:1":\n    tls:\n      insecure_skip_verify: 1\n', 4, 29),
        ('configs:\n  "h:1":\n    auth: [bob]\n', 3, 11),
        ('configs:\n  "h:1":\n    auth:\n      password: [a, b]\n', 4, 17),
    ],
)
def test_wrong_type(text: str, line: int, column: int) -> None:
    assert at(only(text, "wrong-type")) == (line, column, "error")


def test_registry_level_missing() -> None:
    text = 'mirrors:\n  endpoint:\n    - "http://h:1"\n'
    findings = lint(text)
    assert [(f.code, f.line, f.column) for f in findings] == [
        ("registry-level-missing", 2, 3),
        ("wrong-type", 3, 5),
    ]


# -- mirrors and endpoints -----------------------------------------------------------------


def test_scheme_in_mirror_key() -> None:
    finding = only(
        'mirrors:\n  "https://docker.io":\n    endpoint: ["http://h:1"]\n', "mirror-key-scheme"
    )
    assert at(finding) == (2, 3, "error")
    assert "certs.d/https:/docker.io/" in finding.explanation
    assert '"docker.io"' in finding.fix


def test_path_in_mirror_key() -> None:
    finding = only(
        'mirrors:\n  docker.io/library:\n    endpoint: ["http://h:1"]\n', "mirror-key-path"
    )
    assert at(finding) == (2, 3, "error")
    assert '"docker.io"' in finding.fix


def test_blank_mirror_key() -> None:
    assert at(
        only('mirrors:\n  " docker.io":\n    endpoint: ["http://h:1"]\n', "invalid-mirror-key")
    )[:2] == (2, 3)


def test_mirror_without_endpoint() -> None:
    assert at(only("mirrors:\n  docker.io:\n", "empty-mirror")) == (2, 3, "warning")


def test_endpoint_without_scheme_becomes_https() -> None:
    finding = only(
        "mirrors:\n  docker.io:\n    endpoint:\n      - dockyard.lan:30500\n",
        "endpoint-without-scheme",
    )
    assert at(finding) == (4, 9, "warning")
    assert "https://dockyard.lan:30500/v2" in finding.explanation
    assert '"http://dockyard.lan:30500"' in finding.fix


def test_endpoint_without_scheme_on_loopback_becomes_http() -> None:
    finding = only(
        "mirrors:\n  docker.io:\n    endpoint: [127.0.0.1:30500]\n", "endpoint-without-scheme"
    )
    assert at(finding) == (3, 16, "warning")
    assert "http://127.0.0.1:30500/v2 (plain http" in finding.explanation


def test_duplicate_endpoint_after_normalization() -> None:
    text = (
        "mirrors:\n  docker.io:\n    endpoint:\n"
        '      - "https://dockyard.example.com"\n'
        '      - "https://dockyard.example.com/v2/"\n'
        '      - "https://dockyard.example.com/v2"\n'
    )
    findings = lint(text)
    assert [(f.code, f.line, f.column, f.severity) for f in findings] == [
        ("duplicate-endpoint", 6, 9, "warning")
    ]
    assert "line 4" in findings[0].message


@pytest.mark.parametrize(
    ("endpoint", "reason"),
    [
        ('""', "empty"),
        ('"ftp://h:1"', "http and https"),
        ('"http://dock yard:1"', "invalid character"),
        ('"http://h:port"', "invalid port"),
        ('"http:///v2"', "no host"),
    ],
)
def test_invalid_endpoint(endpoint: str, reason: str) -> None:
    finding = only(f"mirrors:\n  docker.io:\n    endpoint: [{endpoint}]\n", "invalid-endpoint")
    assert at(finding) == (3, 16, "error")
    assert reason in finding.message


def test_endpoint_path_without_v2() -> None:
    text = 'mirrors:\n  docker.io:\n    endpoint: ["http://h:1/docker-hub"]\n'
    assert at(only(text, "endpoint-path")) == (3, 16, "warning")
    assert lint('mirrors:\n  docker.io:\n    endpoint: ["http://h:1/hub/v2"]\n') == []


def test_rewrite_with_backslash() -> None:
    text = (
        'mirrors:\n  docker.io:\n    endpoint: ["http://h:1"]\n'
        "    rewrite:\n      '^library/(.*)\\.x': \"lib/$1\"\n"
    )
    assert at(only(text, "rewrite-quoting")) == (5, 7, "error")


# -- configs -------------------------------------------------------------------------------


def test_config_keyed_by_the_upstream() -> None:
    text = (
        'mirrors:\n  docker.io:\n    endpoint: ["https://dockyard.example.com:5000"]\n'
        "configs:\n  docker.io:\n    tls:\n      insecure_skip_verify: true\n"
    )
    finding = only(text, "config-for-upstream")
    assert at(finding) == (5, 3, "error")
    assert '"dockyard.example.com:5000"' in finding.fix


def test_credentials_keyed_by_the_upstream_of_a_wildcard_mirror() -> None:
    text = (
        'mirrors:\n  "*":\n    endpoint: ["http://127.0.0.1:30500"]\n'
        "configs:\n  quay.io:\n    auth: {username: u, password: p}\n"
    )
    assert at(only(text, "config-for-upstream")) == (5, 3, "warning")


def test_config_for_a_registry_pulled_directly_is_fine() -> None:
    text = (
        'mirrors:\n  docker.io:\n    endpoint: ["http://127.0.0.1:30500"]\n'
        "configs:\n  registry.example.com:\n    auth: {username: u, password: p}\n"
    )
    assert lint(text) == []


def test_config_key_with_scheme() -> None:
    text = (
        'mirrors:\n  docker.io:\n    endpoint: ["https://h:1"]\n'
        'configs:\n  "https://h:1":\n    tls: {insecure_skip_verify: true}\n'
    )
    finding = only(text, "config-key-scheme")
    assert at(finding) == (5, 3, "error")
    assert finding.fix == 'use "h:1" as the key.'


def test_config_key_without_the_port() -> None:
    text = (
        'mirrors:\n  docker.io:\n    endpoint: ["https://dockyard.lan:30500"]\n'
        "configs:\n  dockyard.lan:\n    tls: {insecure_skip_verify: true}\n"
    )
    finding = only(text, "config-host-mismatch")
    assert at(finding) == (5, 3, "warning")
    assert '"dockyard.lan:30500"' in finding.fix


def test_tls_options_on_an_http_endpoint() -> None:
    # The file the users start from.
    text = (
        'mirrors:\n  "docker.io":\n    endpoint:\n      - "http://127.0.0.1:30500"\n'
        'configs:\n  "127.0.0.1:30500":\n    tls:\n      insecure_skip_verify: true\n'
    )
    assert at(only(text, "tls-on-http")) == (7, 5, "warning")


def test_missing_ca_cert_and_key_files() -> None:
    text = (
        'mirrors:\n  docker.io:\n    endpoint: ["https://h:1"]\n'
        'configs:\n  "h:1":\n    tls:\n      ca_file: /etc/ca.pem\n'
        "      cert_file: /etc/client.pem\n      key_file: /etc/client.key\n"
    )
    findings = lint(text, existing=("/etc/client.pem",))
    assert [(f.code, f.line, f.column, f.severity) for f in findings] == [
        ("missing-file", 7, 16, "error"),
        ("missing-file", 9, 17, "error"),
    ]
    assert lint(text, existing=("/etc/ca.pem", "/etc/client.pem", "/etc/client.key")) == []
    # Without a way to look at files (a machine that is not the node) they are not checked.
    assert lint_registries(text) == []


def test_certificate_without_key() -> None:
    text = (
        'mirrors:\n  docker.io:\n    endpoint: ["https://h:1"]\n'
        'configs:\n  "h:1":\n    tls:\n      cert_file: /etc/client.pem\n'
    )
    assert at(only(text, "cert-without-key", existing=("/etc/client.pem",))) == (7, 18, "error")


def test_relative_path() -> None:
    text = (
        'mirrors:\n  docker.io:\n    endpoint: ["https://h:1"]\n'
        'configs:\n  "h:1":\n    tls:\n      ca_file: certs/ca.pem\n'
    )
    assert at(only(text, "relative-path")) == (7, 16, "warning")


def test_username_without_password() -> None:
    text = (
        'mirrors:\n  docker.io:\n    endpoint: ["https://h:1"]\n'
        'configs:\n  "h:1":\n    auth:\n      username: bob\n'
    )
    assert at(only(text, "incomplete-auth")) == (6, 5, "warning")


# -- output --------------------------------------------------------------------------------


def test_text_and_json_output() -> None:
    findings = lint('mirrors:\n  docker.io:\n    endpoints: ["http://h:1"]\n')
    text = format_text(findings, "registries.yaml")
    assert text.startswith('registries.yaml:3:5: error[unknown-key] unknown key "endpoints"')
    assert '    fix: did you mean "endpoint"?' in text
    assert text.endswith("registries.yaml: 1 error(s), 0 warning(s)\n")
    assert format_text([], "r.yaml") == "r.yaml: no problems found\n"
    import json

    document = json.loads(format_json(findings, "registries.yaml"))
    assert document["errors"] == 1 and document["warnings"] == 0
    assert document["findings"][0] == {
        "code": "unknown-key",
        "severity": "error",
        "line": 3,
        "column": 5,
        "message": findings[0].message,
        "explanation": findings[0].explanation,
        "fix": findings[0].fix,
    }

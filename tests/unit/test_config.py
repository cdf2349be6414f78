"""Unit tests for dockyard.config: Distribution's config.yml, env overrides, warnings, errors."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from dockyard.config import (
    DEFAULT_ADDR,
    DEFAULT_MANIFEST_MAX_SIZE,
    DEFAULT_ROOT,
    IGNORED_SECTIONS,
    ConfigError,
    LoadedConfig,
    load_config,
    parse_addr,
    parse_duration,
    parse_size,
)

# The configuration from the brief: a typical Distribution pull-through cache file.
DISTRIBUTION_PROXY_CONFIG = """\
version: 0.1
log:
  level: info
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: ":5000"
  headers:
    X-Content-Type-Options: [nosniff]
proxy:
  remoteurl: https://registry-1.docker.io
"""

# Distribution's own cmd/registry/config-example.yml (note the unquoted `:5000`).
DISTRIBUTION_EXAMPLE_CONFIG = """\
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
"""

Loader = Callable[..., LoadedConfig]


@pytest.fixture
def load(tmp_path: Path) -> Loader:
    """Write YAML text to a file and load it, with an explicit (default empty) environment."""

    def run(
        text: str | None = None,
        environ: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> LoadedConfig:
        path: Path | None = None
        if text is not None:
            path = tmp_path / "config.yml"
            path.write_text(textwrap.dedent(text), encoding="utf-8")
        return load_config(path, environ={} if environ is None else environ, overrides=overrides)

    return run


def config_error(load: Loader, text: str | None, **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load(text, **kwargs)
    return str(info.value)


# -- Distribution compatibility -------------------------------------------------------


def test_distribution_proxy_config_loads_with_only_proxy_warnings(load: Loader) -> None:
    loaded = load(DISTRIBUTION_PROXY_CONFIG)
    config = loaded.config
    assert config.version == 0.1
    assert config.log.level == "info"
    assert config.log.fields == {"service": "registry"}
    assert config.storage.filesystem.rootdirectory == "/var/lib/registry"
    assert config.root == Path("/var/lib/registry")
    assert config.storage.delete.enabled is True
    assert config.storage.cache == {"blobdescriptor": "inmemory"}
    assert config.http.addr == ":5000"
    assert parse_addr(config.http.addr) == ("0.0.0.0", 5000)
    assert config.http.headers == {"X-Content-Type-Options": ["nosniff"]}
    assert config.model_dump()["proxy"]["remoteurl"] == "https://registry-1.docker.io"
    # Warnings are allowed only about the proxy section (nothing else in the file is unknown).
    assert all(w.startswith("proxy") or "'proxy" in w for w in loaded.warnings), loaded.warnings


def test_distribution_example_config_loads_without_warnings(load: Loader) -> None:
    loaded = load(DISTRIBUTION_EXAMPLE_CONFIG)
    assert loaded.warnings == ()
    assert loaded.config.http.addr == ":5000"
    assert loaded.config.health["storagedriver"]["enabled"] is True
    assert loaded.config.root == Path("/var/lib/registry")


def test_version_as_string(load: Loader) -> None:
    assert load('version: "0.1"').config.version == "0.1"


@pytest.mark.parametrize(
    "text",
    [
        "http:\n  secret: 123456\n",
        "http:\n  secret: 0.5\n",
    ],
    ids=["int", "float"],
)
def test_scalar_secret_in_file_is_taken_as_text(load: Loader, text: str) -> None:
    # Distribution (go-yaml) decodes any scalar into a string field by its text.
    secret = load(text).config.http.secret
    assert secret == text.split(": ", 1)[1].strip()


def test_secret_from_env_that_looks_like_a_number(load: Loader) -> None:
    # `REGISTRY_HTTP_SECRET=123456` is a valid secret for Distribution: it yaml-decodes the
    # value into the field's own type, a string.
    loaded = load(None, environ={"REGISTRY_HTTP_SECRET": "123456"})
    assert loaded.config.http.secret == "123456"


def test_log_level_is_case_insensitive(load: Loader) -> None:
    # Distribution lowercases log.level before checking it.
    assert load("log:\n  level: INFO\n").config.log.level.lower() == "info"


def test_section_left_empty_is_accepted(load: Loader) -> None:
    # A section whose entries are all commented out is YAML null; Distribution accepts it.
    text = """\
    version: 0.1
    auth:
    #  htpasswd:
    #    realm: basic-realm
    #    path: /etc/registry/htpasswd
    """
    loaded = load(text)
    assert not loaded.config.auth.enabled
    assert loaded.warnings == ()


# -- defaults -------------------------------------------------------------------------


def test_defaults_without_a_file(load: Loader) -> None:
    loaded = load(None)
    config = loaded.config
    assert loaded.warnings == ()
    assert config.http.addr == DEFAULT_ADDR == ":5000"
    assert config.http.net == "tcp"
    assert config.http.prefix == ""
    assert config.http.headers == {}
    assert config.storage.filesystem.rootdirectory == DEFAULT_ROOT
    assert config.root == Path(DEFAULT_ROOT)
    assert config.storage.delete.enabled is False
    assert config.storage.maintenance.uploadpurging.enabled is True
    assert config.validation.manifests.maxsize == DEFAULT_MANIFEST_MAX_SIZE == 4 * 1024 * 1024
    assert config.log.level == "info"
    assert not config.model_dump()["proxy"].get("remoteurl")


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_empty_file_gives_defaults(load: Loader, text: str) -> None:
    loaded = load(text)
    assert loaded.warnings == ()
    assert loaded.config.http.addr == DEFAULT_ADDR


def test_config_is_frozen(load: Loader) -> None:
    config = load(None).config
    with pytest.raises(ValidationError):
        config.http = config.http
    with pytest.raises(ValidationError):
        config.storage.delete.enabled = True


def test_single_header_value_becomes_a_list(load: Loader) -> None:
    config = load("http:\n  headers:\n    X-Frame-Options: DENY\n").config
    assert config.http.headers == {"X-Frame-Options": ["DENY"]}


# -- environment overrides ------------------------------------------------------------


def test_env_overrides_file_values(load: Loader) -> None:
    environ = {
        "REGISTRY_HTTP_ADDR": "127.0.0.1:6000",
        "REGISTRY_STORAGE_DELETE_ENABLED": "false",
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/srv/registry",
        "REGISTRY_LOG_LEVEL": "debug",
    }
    config = load(DISTRIBUTION_PROXY_CONFIG, environ=environ).config
    assert config.http.addr == "127.0.0.1:6000"
    assert config.storage.delete.enabled is False
    assert config.root == Path("/srv/registry")
    assert config.log.level == "debug"
    # Untouched keys keep their file values.
    assert config.log.fields == {"service": "registry"}
    assert config.http.headers == {"X-Content-Type-Options": ["nosniff"]}


def test_env_values_are_yaml_typed(load: Loader) -> None:
    environ = {
        "REGISTRY_STORAGE_DELETE_ENABLED": "true",
        "REGISTRY_VALIDATION_MANIFESTS_MAXSIZE": "1024",
        "REGISTRY_STORAGE_FILESYSTEM_MAXTHREADS": "50",
        "REGISTRY_LOG_ACCESSLOG_DISABLED": "yes",
    }
    config = load(None, environ=environ).config
    assert config.storage.delete.enabled is True
    assert config.validation.manifests.maxsize == 1024
    assert config.storage.filesystem.maxthreads == 50
    assert config.log.accesslog.disabled is True


def test_env_creates_missing_sections(load: Loader) -> None:
    config = load("version: 0.1\n", environ={"REGISTRY_HTTP_TLS_CERTIFICATE": "/c.pem"}).config
    assert config.http.tls.certificate == "/c.pem"


def test_env_replaces_a_null_parent(load: Loader) -> None:
    config = load("storage:\n  delete:\n", environ={"REGISTRY_STORAGE_DELETE_ENABLED": "true"})
    assert config.config.storage.delete.enabled is True


def test_env_can_fill_a_section_the_file_lacks(load: Loader) -> None:
    environ = {
        "REGISTRY_PROXY_REMOTEURL": "https://registry-1.docker.io",
        "REGISTRY_NOTIFICATIONS_EVENTS_INCLUDEREFERENCES": "true",
    }
    loaded = load(None, environ=environ)
    assert loaded.config.model_dump()["proxy"]["remoteurl"] == "https://registry-1.docker.io"
    assert loaded.config.notifications == {"events": {"includereferences": True}}


def test_unrelated_env_is_ignored(load: Loader) -> None:
    environ = {
        "HOME": "/root",
        "PATH": "/usr/bin",
        "REGISTRY": "not-a-section",
        "MY_REGISTRY_HTTP_ADDR": "nonsense",
        "REGISTRY_CONFIGURATION_PATH": "/etc/docker/registry/config.yml",
    }
    loaded = load(DISTRIBUTION_EXAMPLE_CONFIG, environ=environ)
    assert loaded.warnings == ()
    assert loaded.config.http.addr == ":5000"


def test_explicit_environ_replaces_process_environment(
    load: Loader, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGISTRY_HTTP_ADDR", "not an address")
    monkeypatch.setenv("REGISTRY_STORAGE_DELETE_ENABLED", "true")
    config = load(None, environ={}).config
    assert config.http.addr == DEFAULT_ADDR
    assert config.storage.delete.enabled is False


def test_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGISTRY_STORAGE_DELETE_ENABLED", "true")
    assert load_config().config.storage.delete.enabled is True


def test_unknown_env_key_warns_with_its_name(load: Loader) -> None:
    loaded = load(None, environ={"REGISTRY_HTTP_BOGUS": "1", "REGISTRY_FROBNICATE": "x"})
    assert any("'http.bogus'" in w for w in loaded.warnings)
    assert any("'frobnicate'" in w for w in loaded.warnings)


def test_invalid_env_value_names_the_key(load: Loader) -> None:
    message = config_error(load, None, environ={"REGISTRY_STORAGE_DELETE_ENABLED": "maybe"})
    assert "storage.delete.enabled" in message


@pytest.mark.parametrize("value", ["@secret", "[unclosed", "{a: b", "`x", "a: b: c"])
def test_unparsable_env_value_is_a_config_error(load: Loader, value: str) -> None:
    # Values Distribution's YAML decoder also refuses; they must still be a ConfigError.
    with pytest.raises(ConfigError):
        load(None, environ={"REGISTRY_LOG_LEVEL": value})


# -- command-line overrides -----------------------------------------------------------


def test_overrides_beat_env_and_file(load: Loader) -> None:
    config = load(
        DISTRIBUTION_PROXY_CONFIG,
        environ={"REGISTRY_HTTP_ADDR": ":6000"},
        overrides={"http.addr": ":7000", "storage.filesystem.rootdirectory": "/data"},
    ).config
    assert config.http.addr == ":7000"
    assert config.root == Path("/data")


def test_overrides_create_sections(load: Loader) -> None:
    config = load(None, overrides={"storage.delete.enabled": True}).config
    assert config.storage.delete.enabled is True


def test_invalid_override_names_the_key(load: Loader) -> None:
    assert "http.addr" in config_error(load, None, overrides={"http.addr": "nowhere"})


def test_override_under_a_non_mapping_is_a_config_error(load: Loader) -> None:
    # `http` holds a scalar in the file; setting http.addr must report the bad section,
    # not crash with a TypeError.
    with pytest.raises(ConfigError):
        load("http: 5000\n", overrides={"http.addr": ":6000"})


# -- unknown keys and ignored sections ------------------------------------------------


def test_unknown_keys_warn_with_their_dotted_names(load: Loader) -> None:
    text = """\
    bogus: 1
    log:
      hooks: []
      accesslog:
        extra: true
    storage:
      filesystem:
        rootdirectory: /r
        speed: fast
      tag:
        concurrencylimit: 8
    http:
      tls:
        minimumtls: tls1.2
    validation:
      manifests:
        other: 1
    """
    loaded = load(text)
    expected = [
        "bogus",
        "log.hooks",
        "log.accesslog.extra",
        "storage.filesystem.speed",
        "storage.tag",
        "http.tls.minimumtls",
        "validation.manifests.other",
    ]
    for key in expected:
        assert any(f"'{key}'" in w for w in loaded.warnings), (key, loaded.warnings)
    assert len(loaded.warnings) == len(expected)
    # Unknown keys never change the known ones.
    assert loaded.config.root == Path("/r")


def test_free_form_sections_do_not_warn_about_their_contents(load: Loader) -> None:
    text = """\
    storage:
      cache:
        blobdescriptor: redis
        anything: goes
      redirect:
        disable: true
      maintenance:
        readonly:
          enabled: false
    http:
      debug:
        addr: :5001
      http2:
        disabled: false
    health:
      storagedriver:
        enabled: true
    """
    assert load(text).warnings == ()


@pytest.mark.parametrize("section", sorted(IGNORED_SECTIONS))
def test_ignored_sections_warn(load: Loader, section: str) -> None:
    loaded = load(f"{section}:\n  something: here\n")
    assert len(loaded.warnings) == 1
    assert loaded.warnings[0].startswith(f"{section}:")


@pytest.mark.parametrize("section", sorted(IGNORED_SECTIONS))
def test_empty_ignored_sections_do_not_warn(load: Loader, section: str) -> None:
    assert load(f"{section}: {{}}\n").warnings == ()


def test_auth_is_not_an_ignored_section() -> None:
    # Dockyard enforces authentication now: the section is read, not ignored.
    assert "auth" not in IGNORED_SECTIONS


# -- invalid values -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("http:\n  addr: nowhere\n", "http.addr"),
        ("http:\n  addr: ':99999'\n", "http.addr"),
        ("http:\n  addr: 'localhost:'\n", "http.addr"),
        ("http:\n  net: udp\n", "http.net"),
        ("http:\n  headers:\n    X-A: 5\n", "http.headers"),
        ("http:\n  relativeurls: sometimes\n", "http.relativeurls"),
        ("http:\n  tls:\n    clientcas: /a.pem\n", "http.tls.clientcas"),
        ("storage:\n  delete:\n    enabled: maybe\n", "storage.delete.enabled"),
        ("storage:\n  filesystem:\n    maxthreads: 10\n", "storage.filesystem.maxthreads"),
        ("storage:\n  filesystem:\n    rootdirectory: [a]\n", "storage.filesystem.rootdirectory"),
        ("storage: filesystem\n", "storage"),
        ("log:\n  level: verbose\n", "log.level"),
        ("log:\n  formatter: xml\n", "log.formatter"),
        ("log:\n  fields: [a]\n", "log.fields"),
        ("validation:\n  manifests:\n    maxsize: 0\n", "validation.manifests.maxsize"),
        ("validation:\n  manifests:\n    maxsize: big\n", "validation.manifests.maxsize"),
        ("proxy: [remoteurl]\n", "proxy"),
        ("version: [1]\n", "version"),
    ],
)
def test_invalid_values_raise_config_error_naming_the_key(
    load: Loader, text: str, key: str
) -> None:
    message = config_error(load, text)
    assert key in message


def test_every_invalid_key_is_reported(load: Loader) -> None:
    message = config_error(load, "http:\n  addr: nowhere\nlog:\n  level: loud\n")
    assert "http.addr" in message
    assert "log.level" in message


@pytest.mark.parametrize("driver", ["s3", "azure", "gcs", "swift", "oss", "inmemory"])
def test_other_storage_drivers_are_refused(load: Loader, driver: str) -> None:
    message = config_error(load, f"storage:\n  {driver}:\n    bucket: b\n")
    assert f"storage.{driver}" in message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yml"
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(path) in str(info.value)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_config(tmp_path, environ={})


@pytest.mark.parametrize("text", ["http: [unclosed\n", "a: b: c\n", "key: 'unterminated\n"])
def test_invalid_yaml(load: Loader, text: str) -> None:
    assert "YAML" in config_error(load, text)


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", "42\n"])
def test_top_level_must_be_a_mapping(load: Loader, text: str) -> None:
    assert "mapping" in config_error(load, text)


# -- parse_addr -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        (":5000", ("0.0.0.0", 5000)),
        ("127.0.0.1:80", ("127.0.0.1", 80)),
        ("localhost:8080", ("localhost", 8080)),
        ("[::1]:5000", ("::1", 5000)),
        ("[::]:443", ("::", 443)),
        (":0", ("0.0.0.0", 0)),
        (":65535", ("0.0.0.0", 65535)),
    ],
)
def test_parse_addr(addr: str, expected: tuple[str, int]) -> None:
    assert parse_addr(addr) == expected


@pytest.mark.parametrize(
    "addr", ["", "5000", "localhost", ":", "host:", ":65536", ":-1", ":http", ":50 00"]
)
def test_parse_addr_rejects(addr: str) -> None:
    with pytest.raises(ValueError):
        parse_addr(addr)


# -- durations and Dockyard's own keys ------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("168h", 168 * 3600.0),
        ("24h", 86400.0),
        ("1h30m", 5400.0),
        ("2h45m30s", 9930.0),
        ("10s", 10.0),
        ("1.5h", 5400.0),
        ("500ms", 0.5),
        ("250us", 0.00025),
        ("250\u00b5s", 0.00025),
        ("100ns", 1e-7),
        ("0s", 0.0),
        ("0", 0.0),
        ("30", 30.0),
        (" 15m ", 900.0),
        (45, 45.0),
        (2.5, 2.5),
    ],
)
def test_parse_duration(text: str | int | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "h", "10x", "1h 30m", "5 s", "abc", "1w", "h10", "10s!"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1048576", 1048576),
        (4096, 4096),
        ("0", 0),
        ("512b", 512),
        ("500MB", 500 * 1000**2),
        ("500M", 500 * 1000**2),
        ("2kb", 2000),
        ("20GiB", 20 * 1024**3),
        ("50Gi", 50 * 1024**3),
        ("5mi", 5 * 1024**2),
        ("1.5Ki", 1536),
        ("1TiB", 1024**4),
        ("2P", 2 * 1000**5),
        (" 8 MiB ", 8 * 1024**2),
        ("40%", 0.4),
        ("100%", 1.0),
    ],
)
def test_parse_size(text: str | int, size: float) -> None:
    assert parse_size(text) == pytest.approx(size)


@pytest.mark.parametrize(
    "text", ["", "b0", "10x", "10 bytes", "GiB", "0%", "101%", "-5MB", "5ib", "5bb", "1e3M"]
)
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.parametrize(("maxsize", "size"), [("50Gi", 50 * 1024**3), ("5mi", 5 * 1024**2)])
def test_kubernetes_style_sizes_load(load: Loader, maxsize: str, size: int) -> None:
    loaded = load(
        f"proxy:\n  remoteurl: https://registry-1.docker.io\n  cache:\n    maxsize: {maxsize}\n"
    )
    cache = loaded.config.proxy.cache
    assert cache is not None and parse_size(cache.maxsize) == size


def test_distribution_durations_load(load: Loader) -> None:
    text = """\
    storage:
      maintenance:
        uploadpurging:
          enabled: true
          age: 168h
          interval: 24h
          dryrun: false
    http:
      draintimeout: 60s
    """
    loaded = load(text)
    assert loaded.warnings == ()
    purging = loaded.config.storage.maintenance.uploadpurging
    assert (purging.age, purging.interval) == ("168h", "24h")
    assert loaded.config.http.draintimeout == "60s"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("storage:\n  maintenance:\n    uploadpurging:\n      age: soon\n", "age"),
        ("storage:\n  maintenance:\n    uploadpurging:\n      interval: 1w\n", "interval"),
        ("http:\n  draintimeout: forever\n", "http.draintimeout"),
        ("catalog:\n  maxentries: 0\n", "catalog.maxentries"),
    ],
)
def test_invalid_durations_and_limits_name_the_key(load: Loader, text: str, key: str) -> None:
    assert key in config_error(load, text)


def test_catalog_maxentries(load: Loader) -> None:
    assert load(None).config.catalog.maxentries == 1000
    assert load("catalog:\n  maxentries: 50\n").config.catalog.maxentries == 50
    environ = {"REGISTRY_CATALOG_MAXENTRIES": "7"}
    assert load(None, environ=environ).config.catalog.maxentries == 7


# -- the proxy section ----------------------------------------------------------------


def test_distribution_proxy_keys_load_without_warnings(load: Loader) -> None:
    text = """\
    proxy:
      remoteurl: https://registry-1.docker.io
      username: user
      password: pass
      ttl: 168h
    """
    loaded = load(text)
    assert loaded.warnings == ()
    proxy = loaded.config.proxy
    assert proxy.remoteurl == "https://registry-1.docker.io"
    assert (proxy.username, proxy.password, proxy.ttl) == ("user", "pass", "168h")


def test_proxy_from_env(load: Loader) -> None:
    environ = {
        "REGISTRY_PROXY_REMOTEURL": "https://mirror.example",
        "REGISTRY_PROXY_USERNAME": "u",
        "REGISTRY_PROXY_TTL": "1h",
    }
    proxy = load(None, environ=environ).config.proxy
    assert (proxy.remoteurl, proxy.username, proxy.ttl) == ("https://mirror.example", "u", "1h")


def test_upstreams(load: Loader) -> None:
    text = """\
    proxy:
      upstreams:
        - name: docker.io
          url: https://registry-1.docker.io/
        - name: registry.local:5000
          url: http://registry.local:5000
          insecure: true
          tagttl: 1m
    """
    loaded = load(text)
    assert loaded.warnings == ()
    first, second = loaded.config.proxy.upstreams
    assert (first.name, first.url) == ("docker.io", "https://registry-1.docker.io")
    assert (first.timeout, first.tagttl, first.ttl) == ("10s", "5m", "0s")
    assert (second.name, second.insecure, second.tagttl) == ("registry.local:5000", True, "1m")


def test_unknown_upstream_key_warns_with_its_position(load: Loader) -> None:
    text = """\
    proxy:
      extra: 1
      upstreams:
        - name: ghcr.io
          url: https://ghcr.io
          mirrors: [a]
    """
    warnings = load(text).warnings
    assert any("'proxy.extra'" in w for w in warnings)
    assert any("'proxy.upstreams[0].mirrors'" in w for w in warnings)


@pytest.mark.parametrize(
    ("upstream", "key"),
    [
        ("name: Docker.IO\n      url: https://x", "name"),
        ("name: docker.io/library\n      url: https://x", "name"),
        ("name: docker.io\n      url: ftp://x", "url"),
        ("name: docker.io\n      url: registry-1.docker.io", "url"),
        ("name: docker.io\n      url: https://x\n      timeout: soon", "timeout"),
        ("name: docker.io\n      url: https://x\n      ttl: 1w", "ttl"),
        ("name: docker.io\n      url: https://x\n      insecure: perhaps", "insecure"),
        ("url: https://x", "name"),
        ("name: docker.io", "url"),
    ],
)
def test_invalid_upstream_names_the_key(load: Loader, upstream: str, key: str) -> None:
    message = config_error(load, f"proxy:\n  upstreams:\n    - {upstream}\n")
    assert f"proxy.upstreams.0.{key}" in message


def test_invalid_proxy_ttl_names_the_key(load: Loader) -> None:
    assert "proxy.ttl" in config_error(load, "proxy:\n  ttl: a week\n")


def test_proxy_default_names_the_upstream_for_requests_without_a_registry(load: Loader) -> None:
    from dockyard.proxy.upstream import upstreams_from_config

    text = """\
    proxy:
      default: docker.io
      upstreams:
        - name: docker.io
          url: https://registry-1.docker.io
        - name: ghcr.io
          url: https://ghcr.io
    """
    loaded = load(text)
    assert loaded.warnings == ()
    upstreams, default = upstreams_from_config(loaded.config.proxy)
    assert default == "docker.io"
    assert [u.name for u in upstreams] == ["docker.io", "ghcr.io"]
    # Without it, only remoteurl makes a default; upstreams alone have none.
    proxy = load(text.replace("      default: docker.io\n", "")).config.proxy
    assert upstreams_from_config(proxy)[1] is None
    proxy = load("proxy:\n  remoteurl: https://index.docker.io\n").config.proxy
    assert upstreams_from_config(proxy)[1] == "docker.io"
    # remoteurl and a default that agree.
    both = "proxy:\n  remoteurl: https://registry-1.docker.io\n  default: docker.io\n"
    assert upstreams_from_config(load(both).config.proxy)[1] == "docker.io"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            "proxy:\n  default: quay.io\n  upstreams:\n    - {name: docker.io, url: https://x}\n",
            ["proxy.default", "'quay.io'", "docker.io"],
        ),
        ("proxy:\n  default: docker.io\n", ["proxy.default", "'docker.io'", "none"]),
        (
            "proxy:\n  remoteurl: https://quay.io\n  default: docker.io\n",
            ["proxy.remoteurl", "'quay.io'", "keep one"],
        ),
    ],
)
def test_a_proxy_default_that_is_no_upstream_is_refused(
    load: Loader, text: str, words: list[str]
) -> None:
    message = config_error(load, text)
    for word in words:
        assert word in message


def test_validation_manifests_indexes_takes_distribution_3_keys(load: Loader) -> None:
    text = """\
    validation:
      manifests:
        indexes:
          platforms: List
          platformlist:
            - architecture: amd64
              os: linux
    """
    loaded = load(text)
    assert loaded.warnings == ()
    indexes = loaded.config.validation.manifests.indexes
    assert indexes.platforms == "list"
    assert indexes.must_exist(("linux", "amd64"))
    assert not indexes.must_exist(("linux", "arm64"))
    assert not indexes.must_exist(None)
    # The default: every image of an index must be there; none: no image must.
    default = load(None).config.validation.manifests.indexes
    assert default.platforms == "all" and default.must_exist(("linux", "arm64"))
    assert default.must_exist(None)
    none = load("validation:\n  manifests:\n    indexes:\n      platforms: none\n")
    assert not none.config.validation.manifests.indexes.must_exist(("linux", "amd64"))
    # list without a platformlist checks every image, as Distribution does.
    empty = load("validation:\n  manifests:\n    indexes:\n      platforms: list\n")
    assert empty.config.validation.manifests.indexes.must_exist(("linux", "arm64"))


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (
            "validation:\n  manifests:\n    indexes:\n      platforms: some\n",
            "validation.manifests.indexes.platforms",
        ),
        (
            "validation:\n  manifests:\n    indexes:\n      platforms: list\n"
            "      platformlist: [{os: linux}]\n",
            "validation.manifests.indexes.platformlist.0.architecture",
        ),
    ],
)
def test_invalid_index_validation_names_the_key(load: Loader, text: str, key: str) -> None:
    assert key in config_error(load, text)

"""`dockyard doctor`: check a node's mirror set-up the way containerd will use it.

Lints registries.yaml, then for each mirror endpoint checks DNS, TCP, TLS with the
configured CA, the `/v2/` answer and authentication, and resolves image references through
it with `?ns=` exactly as containerd does. Every check passes or fails with the fix.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from dockyard.k3s.endpoint import split_port
from dockyard.k3s.hosts import HostEndpoint, plan_hosts
from dockyard.k3s.lint import lint_registries
from dockyard.k3s.model import RegistriesError, RegistryConfig, parse_registries
from dockyard.oci.reference import ImageReference
from dockyard.proxy.auth import basic_header, parse_challenge

# What containerd sends when it resolves a reference.
CONTAINERD_ACCEPT = (
    "application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.oci.image.index.v1+json, */*"
)


@dataclass(frozen=True)
class Check:
    subject: str  # "registries.yaml", or "docker.io -> http://host:port/v2"
    name: str
    ok: bool
    detail: str = ""
    fix: str = ""
    warning: bool = False


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok or c.warning for c in self.checks)

    def add(self, check: Check) -> bool:
        self.checks.append(check)
        return check.ok


def _lint(text: str, report: Report) -> None:
    findings = lint_registries(text, file_exists=lambda p: Path(p).exists())
    errors = [f for f in findings if f.severity == "error"]
    for finding in findings:
        report.add(
            Check(
                "registries.yaml",
                f"lint {finding.code} (line {finding.line}, column {finding.column})",
                ok=False,
                detail=f"{finding.message}. {finding.explanation}",
                fix=finding.fix,
                warning=finding.severity == "warning",
            )
        )
    if not errors:
        report.add(Check("registries.yaml", "lint", ok=True, detail=f"{len(findings)} warning(s)"))


def _ssl_context(config: RegistryConfig) -> ssl.SSLContext:
    tls = config.tls
    context = ssl.create_default_context(cafile=tls.ca_file if tls and tls.ca_file else None)
    if tls and tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls and tls.cert_file and tls.key_file:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    return context


async def _authorization(
    session: aiohttp.ClientSession,
    response: aiohttp.ClientResponse,
    config: RegistryConfig,
    scope: str,
) -> str | None:
    """Credentials for a challenge, as containerd would build them (None: none configured)."""
    auth = config.auth
    if auth is None or not (auth.username or auth.auth):
        return None
    user, password = auth.username, auth.password
    if auth.auth and not user:
        user, _, password = base64.b64decode(auth.auth).decode().partition(":")
    challenge = parse_challenge(response.headers.get("WWW-Authenticate"))
    if challenge is None or challenge.scheme == "basic":
        return basic_header(user, password)
    params = {"scope": scope, "service": challenge.params.get("service", "")}
    async with session.get(
        challenge.params["realm"],
        params=params,
        headers={"Authorization": basic_header(user, password)},
    ) as token_response:
        if token_response.status != 200:
            return ""
        body = await token_response.json(content_type=None)
    return f"Bearer {body.get('token') or body.get('access_token')}"


async def _probe_endpoint(
    registry: str,
    endpoint: HostEndpoint,
    images: list[ImageReference],
    report: Report,
    check_timeout: float,
) -> None:
    timeout = check_timeout
    url = endpoint.url
    assert url is not None
    base = f"{url.scheme}://{url.host}{url.path.rstrip('/')}"
    subject = f"{registry} -> {base}"
    host, port_text = split_port(url.host)
    host = host.strip("[]")
    port = int(port_text) if port_text else (443 if url.scheme == "https" else 80)
    loop = asyncio.get_running_loop()
    try:
        addresses = await asyncio.wait_for(loop.getaddrinfo(host, port), timeout)
    except (OSError, TimeoutError) as exc:
        report.add(
            Check(
                subject,
                "DNS",
                False,
                f"cannot resolve {host}: {exc}",
                "use a name the node can resolve, or the NodePort IP",
            )
        )
        return
    report.add(Check(subject, "DNS", True, f"{host} -> {addresses[0][4][0]}"))
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        writer.close()
    except (OSError, TimeoutError) as exc:
        report.add(
            Check(
                subject,
                "TCP",
                False,
                f"cannot connect to {host}:{port}: {exc}",
                "check that Dockyard runs and the port (NodePort 30500?) is reachable",
            )
        )
        return
    report.add(Check(subject, "TCP", True, f"connected to {host}:{port}"))
    ssl_option: ssl.SSLContext | bool = False
    if url.scheme == "https":
        try:
            ssl_option = _ssl_context(endpoint.config)
            _r, w = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=ssl_option, server_hostname=host), timeout
            )
            w.close()
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            report.add(
                Check(
                    subject,
                    "TLS",
                    False,
                    f"TLS handshake failed: {exc}",
                    f'set configs."{url.host}".tls.ca_file to the CA that signed '
                    "Dockyard's certificate (dockyard tls init prints it), or use http://",
                )
            )
            return
        report.add(
            Check(
                subject,
                "TLS",
                True,
                "certificate verified"
                if not (endpoint.config.tls and endpoint.config.tls.insecure_skip_verify)
                else "verification skipped (insecure_skip_verify)",
            )
        )
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(
        timeout=client_timeout, connector=aiohttp.TCPConnector(ssl=ssl_option)
    ) as session:
        try:
            async with session.get(f"{base}/") as response:
                status = response.status
                authorization = None
                if status == 401:
                    authorization = await _authorization(session, response, endpoint.config, "")
                    if authorization is None:
                        report.add(
                            Check(
                                subject,
                                "/v2/",
                                False,
                                "the registry requires credentials",
                                f'add configs."{url.host}".auth with username and password',
                            )
                        )
                        return
                    async with session.get(
                        f"{base}/", headers={"Authorization": authorization}
                    ) as again:
                        status = again.status
                    if status != 200:
                        report.add(
                            Check(
                                subject,
                                "auth",
                                False,
                                f"credentials refused ({status})",
                                f'fix configs."{url.host}".auth (dockyard users add)',
                            )
                        )
                        return
                    report.add(Check(subject, "auth", True, "credentials accepted"))
                if status != 200:
                    report.add(
                        Check(
                            subject,
                            "/v2/",
                            False,
                            f"answered {status}",
                            "is this endpoint a registry? K3s appends /v2 to the endpoint",
                        )
                    )
                    return
                report.add(Check(subject, "/v2/", True, "OCI distribution API answers"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            report.add(
                Check(
                    subject,
                    "/v2/",
                    False,
                    f"request failed: {exc}",
                    "check the endpoint's scheme and port",
                )
            )
            return
        for image in images:
            await _resolve(session, base, subject, endpoint.config, image, report)


async def _resolve(
    session: aiohttp.ClientSession,
    base: str,
    subject: str,
    config: RegistryConfig,
    image: ImageReference,
    report: Report,
) -> None:
    url = f"{base}/{image.repository}/manifests/{image.reference}"
    params = {"ns": image.registry}
    headers = {"Accept": CONTAINERD_ACCEPT}
    name = f"resolve {image}"
    try:
        async with session.head(url, params=params, headers=headers) as response:
            status, digest = response.status, response.headers.get("Docker-Content-Digest")
            if status == 401:
                scope = f"repository:{image.repository}:pull"
                authorization = await _authorization(session, response, config, scope)
                if authorization:
                    headers["Authorization"] = authorization
                    async with session.head(url, params=params, headers=headers) as again:
                        status, digest = again.status, again.headers.get("Docker-Content-Digest")
    except (aiohttp.ClientError, TimeoutError) as exc:
        report.add(Check(subject, name, False, f"request failed: {exc}", "see the checks above"))
        return
    if status == 200 and digest:
        report.add(Check(subject, name, True, digest))
    elif status == 404:
        report.add(
            Check(
                subject,
                name,
                False,
                "not found through this mirror; containerd moves on to the next endpoint",
                "push or warm the image (dockyard cache warm), "
                "or configure the upstream for this registry",
            )
        )
    else:
        report.add(
            Check(subject, name, False, f"answered {status}", "see Dockyard's log for this request")
        )


async def diagnose(text: str, images: list[ImageReference], check_timeout: float = 5.0) -> Report:
    """All checks for a registries.yaml text and the references to resolve."""
    report = Report()
    _lint(text, report)
    try:
        registries = parse_registries(text)
    except RegistriesError as exc:
        report.add(Check("registries.yaml", "parse", False, str(exc), "fix the file first"))
        return report
    plan = plan_hosts(registries)
    for directory, host_config in sorted(plan.hosts.items()):
        registry = directory if directory != "_default" else "*"
        wanted = [
            i
            for i in images
            if i.registry == registry or (registry == "*" and i.registry not in plan.hosts)
        ]
        if not host_config.endpoints:
            report.add(
                Check(
                    registry,
                    "mirrors",
                    False,
                    "no mirror endpoint",
                    f'add mirrors."{registry}".endpoint',
                    warning=True,
                )
            )
        for endpoint in host_config.endpoints:
            if endpoint.url is not None:
                await _probe_endpoint(registry, endpoint, wanted, report, check_timeout)
    return report

"""What `dockyard k3s lint` reports: one finding per mistake, with where, why and the fix."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    """One mistake at a 1-based line and column (of the character that is wrong)."""

    code: str
    severity: Severity
    line: int
    column: int
    message: str
    explanation: str
    fix: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def sort_findings(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (f.line, f.column, f.code))


def format_text(findings: list[Finding], filename: str) -> str:
    """`file:line:col: severity[code] message`, then the explanation and the fix, indented."""
    if not findings:
        return f"{filename}: no problems found\n"
    out: list[str] = []
    for finding in findings:
        out.append(
            f"{filename}:{finding.line}:{finding.column}: "
            f"{finding.severity}[{finding.code}] {finding.message}"
        )
        out.append(f"    {finding.explanation}")
        out.append(f"    fix: {finding.fix}")
    errors = sum(1 for f in findings if f.severity == "error")
    warnings = len(findings) - errors
    out.append(f"{filename}: {errors} error(s), {warnings} warning(s)")
    return "\n".join(out) + "\n"


def format_json(findings: list[Finding], filename: str) -> str:
    errors = sum(1 for f in findings if f.severity == "error")
    document = {
        "file": filename,
        "findings": [f.to_dict() for f in findings],
        "errors": errors,
        "warnings": len(findings) - errors,
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"

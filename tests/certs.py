"""Certificates for the TLS tests: a CA of the test's own and a server certificate it signed,
made with the `openssl` binary."""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["make_ca"]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(where: Path, name: str) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for IP 127.0.0.1 signed by it: (ca, cert, key)."""
    where.mkdir()
    _openssl("genrsa", "-out", "ca.key", "2048", cwd=where)
    _openssl("req", "-x509", "-new", "-key", "ca.key", "-days", "2", "-subj", f"/CN={name}",
             "-out", "ca.crt", cwd=where)  # fmt: skip
    _openssl("genrsa", "-out", "server.key", "2048", cwd=where)
    _openssl("req", "-new", "-key", "server.key", "-subj", "/CN=127.0.0.1", "-out", "server.csr",
             cwd=where)  # fmt: skip
    (where / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "server.crt",
             cwd=where)  # fmt: skip
    return where / "ca.crt", where / "server.crt", where / "server.key"

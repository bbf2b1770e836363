"""A relay with a certificate serves https/wss, and the CLI talks to it."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess

import pytest

from tests.e2e.test_cli import account_create, agechat
from tests.support import RelayProcess

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")


def self_signed(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=agechat test relay",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_cli_over_tls(tmp_path, monkeypatch):
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(cafile=str(cert))
    relay = await RelayProcess(
        tmp_path / "relay",
        extra_args=("--tls-cert", str(cert), "--tls-key", str(key)),
        scheme="https",
        ssl=context,
    ).start()
    # Clients trust the relay's certificate through the standard SSL_CERT_FILE variable.
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    try:
        for handle, born in (("alice", "1980-01-01"), ("bob", "1982-02-02")):
            rc, out, err = await account_create(tmp_path / handle, relay.url, handle, handle, born)
            assert rc == 0, err
        rc, _, err = await agechat("--profile", str(tmp_path / "alice"), "send", "bob", "over tls")
        assert rc == 0, err
        rc, out, _ = await agechat(
            "--profile", str(tmp_path / "bob"), "--json", "inbox", "--wait", "5"
        )
        assert json.loads(out)["text"] == "over tls"
        # Without trusting the certificate the client refuses to talk.
        monkeypatch.delenv("SSL_CERT_FILE")
        rc, out, _ = await agechat("--profile", str(tmp_path / "bob"), "--json", "inbox")
        assert (rc, json.loads(out)["error"]["code"]) == (1, "tls_untrusted")
    finally:
        relay.terminate()

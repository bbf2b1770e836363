"""The relay refuses unsafe or broken configurations before it listens."""

from __future__ import annotations

import pytest

from server.config import RelayConfig
from server.run import RelayConfigError, check


def test_loopback_without_tls_is_fine(tmp_path):
    assert check(RelayConfig(data_dir=tmp_path, host="127.0.0.1")) is None
    assert check(RelayConfig(data_dir=tmp_path, host="::1")) is None


def test_public_address_without_tls_needs_insecure(tmp_path):
    with pytest.raises(RelayConfigError, match="without TLS"):
        check(RelayConfig(data_dir=tmp_path, host="0.0.0.0"))
    assert check(RelayConfig(data_dir=tmp_path, host="0.0.0.0", insecure=True)) is None


def test_half_a_tls_configuration_is_refused(tmp_path):
    cert = tmp_path / "cert.pem"
    cert.write_text("not a cert")
    with pytest.raises(RelayConfigError, match="go together"):
        check(RelayConfig(data_dir=tmp_path, tls_cert=cert))
    with pytest.raises(RelayConfigError, match="cannot load"):
        check(RelayConfig(data_dir=tmp_path, tls_cert=cert, tls_key=cert))


def test_unknown_policy_is_refused_until_the_policy_engine_exists(tmp_path):
    with pytest.raises(RelayConfigError, match="policy"):
        check(RelayConfig(data_dir=tmp_path, policy="strict"))

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


def test_presets_load_and_unknown_policies_are_refused(tmp_path):
    for name in ("default", "strict", "open"):
        assert check(RelayConfig(data_dir=tmp_path, policy=name)) is None
    with pytest.raises(RelayConfigError, match="no policy 'lenient'"):
        check(RelayConfig(data_dir=tmp_path, policy="lenient"))


def test_a_bad_key_in_a_policy_file_stops_the_relay_naming_the_key(tmp_path):
    from server.policy.loader import PRESETS_DIR

    text = (PRESETS_DIR / "default.toml").read_text()
    typo = tmp_path / "typo.toml"
    typo.write_text(text.replace("minimum_age = 13", "minimum_age = 13\nminimum_agee = 14"))
    with pytest.raises(RelayConfigError, match=r"unknown field `minimum_agee` - at `\$.ages`"):
        check(RelayConfig(data_dir=tmp_path, policy=str(typo)))
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('initiate = "refused"', 'initiate = "sometimes"', 1))
    with pytest.raises(RelayConfigError, match=r"contact.adult_to_minor.initiate"):
        check(RelayConfig(data_dir=tmp_path, policy=str(bad)))

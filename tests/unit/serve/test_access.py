"""The bind rule shared by lmforge serve and lmforge ui: loopback, or an API key."""

from __future__ import annotations

import pytest

from lmforge.errors import UserError
from lmforge.serve.access import check_bind, is_loopback, key_matches


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.3.4.5", True), ("localhost", True),
                                            ("::1", True), ("[::1]", True), ("0.0.0.0", False), ("::", False),
                                            ("192.168.1.4", False), ("example.com", False)])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_binding_elsewhere_needs_a_key():
    check_bind("127.0.0.1", [])
    check_bind("0.0.0.0", ["k"])
    with pytest.raises(UserError, match="no API key"):
        check_bind("0.0.0.0", [])


def test_key_matches():
    assert key_matches("abc", ["x", "abc"]) and key_matches(" abc ", ["abc"])
    assert not key_matches("", ["abc"]) and not key_matches("abd", ["abc"]) and not key_matches("abc", [])


def test_serve_refuses_an_open_bind_before_loading_anything(tmp_path):
    from lmforge.config.serve import ServeConfig
    from lmforge.serve.server import run_server

    with pytest.raises(UserError, match="no API key"):
        run_server(tmp_path / "not-a-model", ServeConfig(host="0.0.0.0"))

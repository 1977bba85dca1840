"""The egress guard refuses every non-public destination before connecting."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from worker.core.egress import EgressPolicy, EgressRefused, check, why_not_public

OPEN = EgressPolicy()


@pytest.mark.parametrize("url", [
    "http://10.0.0.1/",
    "http://127.0.0.1/",
    "http://[::ffff:127.0.0.1]/",
    "http://169.254.169.254/latest/meta-data/",
    "http://0x7f000001/",
    "http://2130706433/",
    "http://localhost:8080/",
    "http://[::1]/",
    "http://100.64.1.1/",
    "http://[fd00::1]/",
    "http://0.0.0.0/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://[2002:7f00:1::1]/",  # 6to4 around 127.0.0.1
    "http://[64:ff9b::a00:1]/",  # NAT64 around 10.0.0.1
    "http://[64:ff9b:1::1]/",  # local-use NAT64
    "http://192.168.1.1/",
    "http://172.16.0.1/",
])
def test_non_public_destinations_are_refused(url, monkeypatch):
    connects = []
    monkeypatch.setattr(socket.socket, "connect", lambda *a: connects.append(a))
    with pytest.raises(EgressRefused):
        check(url, OPEN)
    assert connects == []


def test_hostname_resolving_to_loopback_is_refused(monkeypatch):
    def fake(host, port, *a, **k):
        assert host == "rebind.example"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("8.8.8.8", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    with pytest.raises(EgressRefused, match="loopback"):
        check("https://rebind.example/hook", OPEN)  # *any* bad address refuses


def test_public_address_is_pinned_with_host_and_sni(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, port, *a, **k: [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port))])
    t = check("https://hooks.example.com:8443/x?y=1", OPEN)
    assert t.connect_url == "https://93.184.216.34:8443/x?y=1"
    assert t.host == "hooks.example.com" and t.host_header == "hooks.example.com:8443"


def test_allowlist_cidr_and_hostname_and_https_only():
    assert check("http://127.0.0.1:9/", EgressPolicy.parse("127.0.0.0/8")).port == 9
    assert check("http://localhost/", EgressPolicy.parse("localhost")).host == "localhost"
    with pytest.raises(EgressRefused, match="https"):
        check("http://127.0.0.1/", EgressPolicy.parse("127.0.0.0/8", https_only=True))
    with pytest.raises(EgressRefused):
        check("file:///etc/passwd", OPEN)
    with pytest.raises(EgressRefused, match="credentials"):
        check("http://user:pw@example.com/", OPEN)


@pytest.mark.parametrize("ip", ["8.8.8.8", "2606:4700:4700::1111", "1.1.1.1"])
def test_public_addresses_pass(ip):
    assert why_not_public(ipaddress.ip_address(ip)) is None

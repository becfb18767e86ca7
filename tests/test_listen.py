"""``check_can_listen``: a taken port or a foreign address is one clear line before the service starts."""

from __future__ import annotations

import contextlib
import os
import socket
import time

import pytest

from surgifuse.errors import InputError
from surgifuse.service.listen import check_can_listen


@contextlib.contextmanager
def _listening(host: str = "127.0.0.1"):
    """A socket listening on a free port of ``host``, as another server would hold it; yields the port."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_free_port_passes_and_stays_free():
    with _listening() as port:
        pass
    check_can_listen("127.0.0.1", port)
    check_can_listen("127.0.0.1", port)  # the check closed its socket: nothing holds the port
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))


def test_a_port_in_use_is_refused_naming_the_port():
    with _listening() as port:
        with pytest.raises(InputError) as caught:
            check_can_listen("127.0.0.1", port)
    error = caught.value
    assert error.field == "port"
    message = str(error)
    assert f"port {port} on 127.0.0.1 is already in use" in message and "--port" in message
    assert "\n" not in message


def test_a_host_name_is_checked_on_its_addresses():
    with _listening() as port:
        with pytest.raises(InputError, match=rf"port {port} on localhost \(127\.0\.0\.1\) is already in use"):
            check_can_listen("localhost", port)


def test_a_port_in_time_wait_is_accepted_as_uvicorn_would():
    # A restarted service finds its port in TIME_WAIT (the old server closed connections first):
    # uvicorn binds with SO_REUSEADDR and succeeds, so the check must not refuse it. (Linux lets a
    # bind pass a TIME_WAIT connection when both sockets set SO_REUSEADDR; uvicorn's always do.)
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server side closes first: its end of the connection waits in TIME_WAIT
        client.recv(1)
        client.close()
    time.sleep(0.05)
    with pytest.raises(OSError):  # the port is really held in TIME_WAIT: a plain bind fails
        with socket.socket() as plain:
            plain.bind(("127.0.0.1", port))
    check_can_listen("127.0.0.1", port)


def test_an_address_not_on_this_machine_is_refused_naming_the_host():
    if _read("/proc/sys/net/ipv4/ip_nonlocal_bind") == "1":
        pytest.skip("this machine lets any address be bound (net.ipv4.ip_nonlocal_bind=1)")
    with pytest.raises(InputError) as caught:
        check_can_listen("192.0.2.1", 8000)  # TEST-NET-1: documentation only, on no machine
    assert caught.value.field == "host"
    assert "192.0.2.1" in str(caught.value) and "not on this machine" in str(caught.value)


@pytest.mark.parametrize("port", [-1, 65536, "8000", True])
def test_a_port_out_of_range_is_refused(port):
    with pytest.raises(InputError, match="port must be an int in 0..65535") as caught:
        check_can_listen("127.0.0.1", port)
    assert caught.value.field == "port"


def test_an_unknown_host_name_is_refused_naming_the_host():
    with pytest.raises(InputError, match="no such host name") as caught:
        check_can_listen("no-such-host.invalid", 8000)
    assert caught.value.field == "host"


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may listen on any port")
def test_a_privileged_port_is_refused_naming_the_port():
    if int(_read("/proc/sys/net/ipv4/ip_unprivileged_port_start") or 1024) <= 80:
        pytest.skip("this machine lets anyone listen on port 80")
    with pytest.raises(InputError, match="no permission to listen on port 80") as caught:
        check_can_listen("127.0.0.1", 80)
    assert caught.value.field == "port"

"""Before the service starts: can it listen on (host, port)?

uvicorn finds out only after the app is built and the source opened, then logs an ``OSError`` with
an errno and exits; ``check_can_listen`` asks first and says in one line what to change. It binds
the way uvicorn does (``asyncio``'s ``create_server``: every address the host resolves to, with
``SO_REUSEADDR``, IPv6 sockets IPv6-only), so it refuses exactly what uvicorn would refuse: a port
another process listens on, not one whose last connections linger in TIME_WAIT after a restart.
"""

from __future__ import annotations

import errno
import socket

from surgifuse.errors import InputError

__all__ = ["check_can_listen"]


def check_can_listen(host: str, port: int) -> None:
    """Raise ``InputError`` when the service could not listen on ``host``:``port``; else return.

    Binds a socket to each address of ``host`` as uvicorn would, then closes them (nothing listens
    after the call; another process may still take the port before the service binds it).

    Raises
    ------
    InputError
        ``field="port"``: the port is in use (another process listens on it), needs privileges, or
        is not in 0..65535;
        ``field="host"``: the host name does not resolve, or the address is not on this machine.

    Examples
    --------
    >>> check_can_listen("127.0.0.1", 0)  # port 0: any free port, always possible
    """
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise InputError(f"port must be an int in 0..65535, got {port!r}; choose another with --port", field="port",
                         allowed="0..65535")
    try:
        infos = socket.getaddrinfo(host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise InputError(f"cannot listen on {host}: no such host name or address ({exc.strerror}); "
                         "choose another with --host", field="host") from None
    sockets = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise _explain(exc, host, port, address[0]) from None
    finally:
        for sock in sockets:
            sock.close()


def _explain(exc: OSError, host: str, port: int, address: str) -> OSError:
    where = host if host == address else f"{host} ({address})"
    if exc.errno == errno.EADDRINUSE:
        return InputError(f"port {port} on {where} is already in use (another surgifuse serve?); "
                          "choose another with --port", field="port")
    if exc.errno == errno.EADDRNOTAVAIL:
        return InputError(f"cannot listen on {where}: the address is not on this machine; choose one of its "
                          "addresses with --host (127.0.0.1: this machine only, 0.0.0.0: every network)",
                          field="host")
    if exc.errno == errno.EACCES:
        return InputError(f"no permission to listen on port {port} on {where} (ports below 1024 need "
                          "privileges); choose another with --port", field="port")
    return exc

"""Records every socket connection and name lookup of the process it is loaded in.

Put this folder on PYTHONPATH and set TANDEM_SOCKET_LOG to a file: each
``connect``/``connect_ex``/``getaddrinfo`` call appends one line to it. The LSP
channel is the process's stdin and stdout, which are pipes, not sockets.
"""

import json
import os
import socket

_LOG = os.environ.get("TANDEM_SOCKET_LOG")

if _LOG:
    _connect = socket.socket.connect
    _connect_ex = socket.socket.connect_ex
    _getaddrinfo = socket.getaddrinfo

    def _record(kind: str, what: object) -> None:
        with open(_LOG, "a", encoding="utf-8") as f:
            f.write(json.dumps([kind, repr(what)]) + "\n")

    def connect(self: socket.socket, address: object) -> None:
        _record("connect", address)
        _connect(self, address)  # type: ignore[arg-type]

    def connect_ex(self: socket.socket, address: object) -> int:
        _record("connect", address)
        return _connect_ex(self, address)  # type: ignore[arg-type]

    def getaddrinfo(*args: object, **kwargs: object) -> object:
        _record("getaddrinfo", args[:2])
        return _getaddrinfo(*args, **kwargs)  # type: ignore[arg-type]

    socket.socket.connect = connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]

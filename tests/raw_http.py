"""HTTP over a raw socket, for requests no client library would send and answers that may be empty."""
from __future__ import annotations

import socket


def exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read one whole answer (the server closes or says Content-Length)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(request)
        return read_answer(conn)


def read_answer(conn: socket.socket, buffer: bytearray | None = None) -> tuple[int, dict[str, str], bytes]:
    """One answer from `conn`; bytes read past it stay in `buffer` for the next one."""
    data = buffer if buffer is not None else bytearray()
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, f"empty reply after {bytes(data)!r}"
        data += chunk
    end = data.index(b"\r\n\r\n")
    status_line, *lines = data[:end].decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    length = int(headers["content-length"])
    while len(data) < end + 4 + length:
        chunk = conn.recv(65536)
        assert chunk, "answer cut short"
        data += chunk
    body = bytes(data[end + 4:end + 4 + length])
    del data[:end + 4 + length]
    return int(status_line.split()[1]), headers, body

"""Sends N chat requests one after another on one keep-alive connection and checks each answer
is a 200 (scripts/instructions.sh). Stdlib only.

usage: keepalive_client.py HOST PORT N BODY_FILE [API_KEY]
"""

import socket
import sys


def read_answer(sock, buf):
    """One HTTP/1.1 answer (Content-Length or chunked); returns (status line, rest of buffer)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("connection closed mid-answer")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip()
    if b"content-length" in fields:
        need = int(fields[b"content-length"])
        while len(body) < need:
            body += sock.recv(65536)
        return lines[0], body[need:]
    if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
        while not body.endswith(b"0\r\n\r\n"):
            body += sock.recv(65536)
        return lines[0], b""
    raise SystemExit("answer without a length: " + head.decode(errors="replace"))


def main():
    host, port, n, body_file = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    key = sys.argv[5] if len(sys.argv) > 5 else "sk-bench-client-key"
    body = open(body_file, "rb").read().strip()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: Bearer %s\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        % (host.encode(), port, key.encode(), len(body))
    ) + body
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    for _ in range(n):
        sock.sendall(request)
        status, buf = read_answer(sock, buf)
        if not status.startswith(b"HTTP/1.1 200"):
            raise SystemExit("answer: " + status.decode(errors="replace"))


if __name__ == "__main__":
    main()

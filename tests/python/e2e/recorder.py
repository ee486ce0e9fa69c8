"""A recording reverse proxy between llmux and mock-upstream.

The standalone mock binary does not expose what it received, and the checks must assert
what llmux really sent upstream (system prompt, tools, tool results matched by id, the
headers it forwarded). So llmux's providers point here; every request is recorded and
relayed to the mock, and the mock's answer is relayed back as it arrives (SSE streams
stay streams: each read is written as one HTTP/1.1 chunk at once).
"""

from __future__ import annotations

import http.client
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Hop-by-hop headers (RFC 9110 §7.6.1) and the ones this proxy re-frames itself.
_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "host",
}


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0
    reply: bytes = b""
    done: threading.Event = field(default_factory=threading.Event)

    def json(self) -> Any:
        return json.loads(self.body)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


class Recorder:
    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self._lock = threading.Lock()
        self._requests: list[Recorded] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:  # quiet
                pass

            def _read_body(self) -> bytes:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    out = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return bytes(out)
                        out += self.rfile.read(size)
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _relay(self) -> None:
                body = self._read_body()
                rec = Recorded(
                    method=self.command,
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                recorder._add(rec)
                try:
                    self._forward(rec)
                finally:
                    rec.done.set()

            def _forward(self, rec: Recorded) -> None:
                conn = http.client.HTTPConnection("127.0.0.1", recorder.upstream_port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                    headers["Content-Length"] = str(len(rec.body))
                    conn.request(rec.method, rec.path, body=rec.body, headers=headers)
                    resp = conn.getresponse()
                    rec.status = resp.status
                    self.send_response_only(resp.status, resp.reason)
                    for k, v in resp.getheaders():
                        if k.lower() not in _HOP:
                            self.send_header(k, v)
                    length = resp.getheader("Content-Length")
                    if length is not None and resp.getheader("Transfer-Encoding") is None:
                        data = resp.read()
                        rec.reply = data
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)
                        self.wfile.flush()
                        return
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    reply = bytearray()
                    while True:
                        piece = resp.read1(65536)
                        if not piece:
                            break
                        reply += piece
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                    rec.reply = bytes(reply)
                finally:
                    conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _relay

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="recorder", daemon=True)
        self._thread.start()

    def _add(self, rec: Recorded) -> None:
        with self._lock:
            self._requests.append(rec)

    def mark(self) -> int:
        """A position; `since(mark)` returns what arrived after it."""
        with self._lock:
            return len(self._requests)

    def since(self, mark: int) -> list[Recorded]:
        with self._lock:
            out = self._requests[mark:]
        for r in out:
            r.done.wait(timeout=30)
        return out

    def only_since(self, mark: int) -> Recorded:
        """The single upstream request made since `mark` (a retry or a missing call fails)."""
        got = self.since(mark)
        assert len(got) == 1, f"expected exactly 1 upstream request, got {len(got)}: {[str(r) for r in got]}"
        return got[0]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

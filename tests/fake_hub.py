"""A local HTTP server that stands in for the Hugging Face hub in tests (nothing is downloaded).

It serves `/<owner>/<repo>/resolve/<revision>/<path>` the way huggingface_hub's hf_hub_download
reads it (huggingface_hub/file_download.py, get_hf_file_metadata and http_get):
- HEAD: X-Repo-Commit (a 40-hex commit; required), ETag (the content's sha256, as the hub gives
  for LFS files; required), Content-Length (required), Accept-Ranges.
- GET: the bytes; with `Range: bytes=N-` a 206 and Content-Range (how a partial file resumes).
- An unknown path: 404 with X-Error-Code: EntryNotFound.
It also serves plain files at any other path (`add_raw`), as a web server such as
raw.githubusercontent.com does: Content-Length, Accept-Ranges and Range, but no hub headers.
Faults to test against: `cut` (paths whose first GET announces the full length, sends half, and
drops the connection) and `slow` (paths whose first GET sends 11 MiB, then trickles, so a test
can kill the client mid-file); a raw file's key for them is its path.
Every request is logged as (method, path, Range header); `headers` keeps each request's headers.
"""

from __future__ import annotations

import hashlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

COMMIT = "0123456789abcdef0123456789abcdef01234567"
FAST_BYTES = 11 * 2**20  # past huggingface_hub's first 10 MiB write, so a partial file exists
TRICKLE_BYTES = 16 * 1024
TRICKLE_PAUSE_S = 0.05


class FakeHub:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}  # "owner/repo/revision/path" -> content
        self.raw: dict[str, bytes] = {}  # "/url/path" -> content, served without hub headers
        self.headers: list[dict[str, str]] = []
        self.cut: set[str] = set()
        self.slow: set[str] = set()
        self.log: list[tuple[str, str, str]] = []
        self._gets: dict[str, int] = {}
        self._lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                hub._serve(self, body=False)

            def do_GET(self) -> None:
                hub._serve(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def add(self, repo: str, revision: str, path: str, content: bytes) -> None:
        self.files[f"{repo}/{revision}/{path}"] = content

    def add_raw(self, path: str, content: bytes) -> str:
        """Serve `content` at `path` like a plain web server; returns its URL."""
        self.raw[path] = content
        return self.url + path

    def gets(self, path_suffix: str) -> list[tuple[str, str, str]]:
        return [e for e in self.log if e[0] == "GET" and e[1].endswith(path_suffix)]

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _serve(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        rng = h.headers.get("Range", "")
        with self._lock:
            self.log.append((h.command, h.path, rng))
            self.headers.append(dict(h.headers.items()))
        plain = h.path.split("?")[0] in self.raw
        parts = h.path.split("?")[0].lstrip("/").split("/")  # owner/repo/resolve/revision/path...
        key = h.path.split("?")[0] if plain else "/".join(parts[:2] + parts[3:])
        if plain:
            content: bytes | None = self.raw[key]
        else:
            content = self.files.get(key) if len(parts) > 4 and parts[2] == "resolve" else None
        if content is None:
            h.send_response(404)
            h.send_header("X-Error-Code", "EntryNotFound")
            h.send_header("X-Repo-Commit", COMMIT)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        start = int(rng.removeprefix("bytes=").split("-")[0]) if rng.startswith("bytes=") else 0
        part = content[start:]
        h.send_response(206 if start else 200)
        if not plain:
            h.send_header("X-Repo-Commit", COMMIT)
            h.send_header("ETag", f'"{hashlib.sha256(content).hexdigest()}"')
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Length", str(len(part)))
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(content) - 1}/{len(content)}")
        h.end_headers()
        if not body:
            return
        with self._lock:
            self._gets[key] = n = self._gets.get(key, 0) + 1
        if n == 1 and key in self.cut:  # announce everything, send half, hang up
            h.wfile.write(part[: len(part) // 2])
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(2)
            return
        try:
            if n == 1 and key in self.slow:  # the first FAST_BYTES at once, then a trickle
                h.wfile.write(part[:FAST_BYTES])
                for i in range(FAST_BYTES, len(part), TRICKLE_BYTES):
                    h.wfile.write(part[i : i + TRICKLE_BYTES])
                    h.wfile.flush()
                    time.sleep(TRICKLE_PAUSE_S)
                return
            h.wfile.write(part)
        except (BrokenPipeError, ConnectionResetError):  # the client was killed: that is the test
            pass

"""A small OpenAI-compatible chat server on 127.0.0.1 for tests of VLM clients.

It answers ``POST /v1/chat/completions`` in the OpenAI response shape with scripted replies
(a fixed text, or a function of the request, e.g. boxes computed from the image size) and
records every request body so tests can assert on what the client sent. It is a real HTTP
server (threaded, free port), so the real ``openai`` client and its error handling run.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = str | Callable[[dict[str, Any]], str]


class FakeVLMServer:
    """Usage: ``with FakeVLMServer(reply='[]') as srv: client(base_url=srv.base_url)``."""

    def __init__(
        self,
        reply: Reply = "[]",
        *,
        delay_s: float = 0.0,
        status: int = 200,
        reject: Callable[[dict[str, Any]], str | None] | None = None,
        finish_reason: str = "stop",
    ) -> None:
        self.replies: list[Reply] = [reply]
        # reject(body) -> an error message answered with 400 (e.g. an unsupported option)
        self.reject = reject
        self.finish_reason = finish_reason  # "length": the answer was cut at max_tokens
        self.delay_s = delay_s
        self.status = status
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    # -- scripting -------------------------------------------------------------------------

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order; the last one repeats."""
        self.replies = list(replies)

    def _next_reply(self, body: dict[str, Any]) -> str:
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        return reply(body) if callable(reply) else reply

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._port is not None, "server not started"
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeVLMServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"_unparsed": raw.decode("utf-8", "replace")}
                fake.requests.append(body)
                fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                if fake.delay_s:
                    time.sleep(fake.delay_s)
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {"error": {"message": "not found"}})
                    return
                if fake.status != 200:
                    self._send(fake.status, {"error": {"message": f"scripted {fake.status}"}})
                    return
                refusal = fake.reject(body) if fake.reject else None
                if refusal:
                    self._send(400, {"error": {"message": refusal, "type": "invalid_request"}})
                    return
                text = fake._next_reply(body)
                self._send(
                    200,
                    {
                        "id": f"chatcmpl-fake-{len(fake.requests)}",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body.get("model", "fake-vlm"),
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": text},
                                "finish_reason": fake.finish_reason,
                            }
                        ],
                        "usage": {
                            "prompt_tokens": 100,
                            "completion_tokens": max(1, len(text) // 4),
                            "total_tokens": 100 + max(1, len(text) // 4),
                        },
                    },
                )

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeVLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- helpers for assertions -----------------------------------------------------------------


def message_parts(body: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(texts, image URLs) of the user messages of a recorded request."""
    texts: list[str] = []
    images: list[str] = []
    for msg in body.get("messages", []):
        content = msg.get("content")
        if isinstance(content, str):
            texts.append(content)
            continue
        for part in content or []:
            if part.get("type") == "text":
                texts.append(part.get("text", ""))
            elif part.get("type") == "image_url":
                images.append(part.get("image_url", {}).get("url", ""))
    return texts, images


def image_size(body: dict[str, Any]) -> tuple[int, int]:
    """(width, height) of the first image data URL in a recorded request."""
    from PIL import Image

    _, images = message_parts(body)
    if not images:
        raise AssertionError("no image in the request")
    header, _, b64 = images[0].partition(",")
    if not header.startswith("data:image/"):
        raise AssertionError(f"not a data URL: {header[:40]}")
    with Image.open(io.BytesIO(base64.b64decode(b64))) as img:
        return img.size

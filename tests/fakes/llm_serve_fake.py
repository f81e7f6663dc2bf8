"""A stand-in for the embedded llama.cpp server that runs through the real server entry point
(``models.llm_server._serve``: argument parsing, SIGTERM, parent watch, idle watchdog) with a
tiny OpenAI-compatible HTTP server instead of the model. Used to test the shared, detached
server's start, lock, state file, reuse, restart and idle exit without 1 GB of weights.

Extra options (ignored by ``_serve``): ``--delay S`` before listening, ``--crash`` while
"loading", ``--reply-delay S`` per chat request, ``--launch-log FILE`` (one line per start).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from models.llm_server import Activity, _serve


def fake_backend(a: argparse.Namespace) -> Any:
    p = argparse.ArgumentParser()
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--crash", action="store_true")
    p.add_argument("--reply-delay", type=float, default=0.0)
    p.add_argument("--launch-log", default=None)
    x, _ = p.parse_known_args()
    if x.launch_log:
        with open(x.launch_log, "a") as f:
            f.write(f"{os.getpid()}\n")
    time.sleep(x.delay)
    if x.crash:
        print("error: failed to load model: not enough memory", file=sys.stderr, flush=True)
        sys.exit(3)
    counts = {"served": 0, "busy": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def _send(self, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._send({"status": "ok"})
            else:
                self._send({"object": "list", "data": [{"id": a.alias, "object": "model"}]})

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                counts["busy"] += 1
            time.sleep(x.reply_delay)
            with lock:
                counts["busy"] -= 1
                counts["served"] += 1
            self._send(
                {
                    "id": "x",
                    "object": "chat.completion",
                    "created": 0,
                    "model": a.alias,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "hi"},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
                }
            )

    httpd = ThreadingHTTPServer((a.host, a.port), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()

    def activity() -> Activity:
        with lock:
            return counts["busy"] > 0, (float(counts["served"]),)

    return activity


if __name__ == "__main__":
    _serve(backend=fake_backend)

"""A stand-in for DashScope's CosyVoice services: the WebSocket synthesis API and voice enrollment.

The servers bind 127.0.0.1 on a free port and run in a thread for the length of a `with`.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.fake_cosyvoice import fake_pcm16

# -- the fake DashScope WebSocket service --------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[。！？.!?])\s*")


class FakeDashScopeServer:
    """run-task / continue-task / finish-task in; task-started, result-generated (+ binary audio),
    task-finished or task-failed out. A wrong Authorization header is refused at the handshake."""

    def __init__(
        self, api_key: str = "sk-test", fail_with: tuple[str, str] | None = None, frames_per_sentence: int = 3
    ):
        self.api_key = api_key
        self.fail_with = fail_with
        self.frames_per_sentence = frames_per_sentence
        self.messages: list[dict] = []
        self.authorizations: list[str] = []
        self.sentences: list[str] = []
        self.url = ""
        self._server = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> FakeDashScopeServer:
        from websockets.sync.server import serve

        self._server = serve(self._handle, "127.0.0.1", 0, process_request=self._check_key)
        port = self._server.socket.getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/api-ws/v1/inference"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._thread.join(10)

    def _check_key(self, connection, request):
        authorization = request.headers.get("Authorization", "")
        self.authorizations.append(authorization)
        if authorization != f"bearer {self.api_key}":
            return connection.respond(401, "Invalid API-key provided.\n")
        return None

    def _handle(self, connection) -> None:
        rate = 24000
        for raw in connection:
            message = json.loads(raw)
            self.messages.append(message)
            action, task_id = message["header"]["action"], message["header"]["task_id"]
            if action == "run-task":
                rate = message["payload"]["parameters"]["sample_rate"]
                if self.fail_with is not None:
                    code, text = self.fail_with
                    connection.send(
                        _server_event(task_id, "task-failed", error_code=code, error_message=text)
                    )
                    return
                connection.send(_server_event(task_id, "task-started"))
            elif action == "continue-task":
                for sentence in filter(None, _SENTENCE_END.split(message["payload"]["input"]["text"])):
                    self._speak(connection, task_id, len(self.sentences), sentence, rate)
                    self.sentences.append(sentence)
            elif action == "finish-task":
                connection.send(
                    _server_event(task_id, "task-finished", payload={"usage": {"characters": 10}})
                )
                return

    def _speak(self, connection, task_id: str, index: int, sentence: str, rate: int) -> None:
        def result(kind: str, **extra) -> str:
            output = {"sentence": {"index": index, "words": []}, "type": kind, **extra}
            return _server_event(task_id, "result-generated", payload={"output": output})

        connection.send(result("sentence-begin", original_text=sentence))
        pcm = fake_pcm16(sentence, rate)
        step = -(-len(pcm) // self.frames_per_sentence)
        step += step % 2  # DashScope frames hold whole samples
        for start in range(0, len(pcm), step):
            connection.send(result("sentence-synthesis"))
            connection.send(pcm[start : start + step])
        connection.send(result("sentence-end"))


def _server_event(task_id: str, event: str, payload: dict | None = None, **header) -> str:
    return json.dumps(
        {"header": {"task_id": task_id, "event": event, "attributes": {}, **header}, "payload": payload or {}}
    )


class FakeEnrollServer:
    """DashScope's voice-enrollment endpoint: JSON in, {"output": {"voice_id": ...}} out."""

    def __init__(self, api_key: str = "sk-test") -> None:
        self.api_key = api_key
        self.bodies: list[dict] = []
        self.url = ""
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> FakeEnrollServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.bodies.append(body)
                if self.headers.get("Authorization") != f"Bearer {outer.api_key}":
                    self._answer(401, {"code": "InvalidApiKey", "message": "Invalid API-key provided."})
                    return
                voice_id = f"{body['input']['target_model']}-{body['input']['prefix']}-0123456789"
                self._answer(
                    200, {"output": {"voice_id": voice_id}, "usage": {"count": 1}, "request_id": "r1"}
                )

            def _answer(self, status: int, data: dict) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = (
            f"http://127.0.0.1:{self._server.server_address[1]}/api/v1/services/audio/tts/customization"
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

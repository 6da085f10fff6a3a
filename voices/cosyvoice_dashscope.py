"""CosyVoice cloned voices hosted by Alibaba Cloud Model Studio (DashScope), over its WebSocket API.

Protocol (DashScope docs, "CosyVoice WebSocket API", client and server events):
- connect to `wss://dashscope.aliyuncs.com/api-ws/v1/inference` (Singapore:
  `wss://dashscope-intl.aliyuncs.com/...`) with `Authorization: bearer <API key>`;
- send `run-task` (header: action, task_id, streaming=duplex; payload: task_group=audio,
  task=tts, function=SpeechSynthesizer, model, parameters {text_type=PlainText, voice,
  format, sample_rate, volume, rate, pitch}, input={}) and wait for `task-started`;
- send the text in `continue-task` messages (payload.input.text, at most 20,000 characters
  each), then `finish-task`;
- the server answers `result-generated` events (`sentence-begin` with `original_text`,
  `sentence-synthesis` followed by one binary audio frame, `sentence-end`), then
  `task-finished`, or `task-failed` with header.error_code / header.error_message.
Audio is requested as `pcm`: 16-bit little-endian mono at `sample_rate`.

Sentence bookkeeping uses the server's own sentence events, so each chunk carries the sentence
the server says it is speaking. The WebSocket client is the `websockets` package (its blocking
`websockets.sync.client`, so no event loop is needed in worker threads).

A cloned voice is enrolled once with `enroll_voice()` and then used by its id. The documented
enrollment API takes the sample as a *publicly reachable URL* (DashScope fetches it), not as an
upload, which is why `enroll_voice` asks for a URL rather than the local reference file.
Emotions are not sent: the run-task parameters documented for cloned voices have no
instruction field, so `emotion` is ignored with a debug log.
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from avatar.core.errors import EngineUnavailable, InputError
from avatar.core.types import Speech, TTSChunk
from voices.cosyvoice_common import (
    Pcm16Decoder,
    SentenceAssembler,
    check_language,
    collapse_whitespace,
    join_speech,
    split_text,
)

log = logging.getLogger(__name__)

DEFAULT_URL = "wss://dashscope.aliyuncs.com/api-ws/v1/inference"
INTL_URL = "wss://dashscope-intl.aliyuncs.com/api-ws/v1/inference"
DEFAULT_ENROLL_URL = "https://dashscope.aliyuncs.com/api/v1/services/audio/tts/customization"
SAMPLE_RATES_HZ = (8000, 16000, 22050, 24000, 44100, 48000)
MAX_TEXT_CHARS = 2000  # per continue-task; the documented limit is 20,000
KEY_HINT = (
    "set DASHSCOPE_API_KEY or pass --dashscope-key (keys are per region: a Beijing key works only "
    "with dashscope.aliyuncs.com, a Singapore key with dashscope-intl.aliyuncs.com)"
)
DOCS = "https://help.aliyun.com/zh/model-studio/cosyvoice-websocket-api"


def _api_key(api_key: str | None) -> str:
    key = api_key if api_key is not None else os.environ.get("DASHSCOPE_API_KEY", "")
    if not key or not key.strip():
        raise EngineUnavailable("DashScope needs an API key", KEY_HINT)
    return key.strip()


def _one_line(text: object, limit: int = 300) -> str:
    return " ".join(str(text).split())[:limit]


class DashScopeCosyVoiceTTS:
    """Speech in a DashScope CosyVoice voice (system or enrolled clone); one WebSocket task per call."""

    def __init__(
        self,
        voice: str,
        *,
        api_key: str | None = None,
        model: str = "cosyvoice-v2",
        language: str = "zh",
        sample_rate_hz: int = 24000,
        url: str = DEFAULT_URL,
        volume: int = 50,
        rate: float = 1.0,
        pitch: float = 1.0,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 30.0,
    ) -> None:
        """`voice` is a voice id from `enroll_voice()` (or a system voice); enrolled voices only
        work with the `model` they were enrolled for."""
        if not isinstance(voice, str) or not voice.strip():
            raise InputError(
                "DashScope CosyVoice needs a voice id", "enroll your sample once with enroll_voice()"
            )
        if sample_rate_hz not in SAMPLE_RATES_HZ:
            raise InputError(
                f"DashScope does not offer {sample_rate_hz} Hz",
                f"use one of: {', '.join(map(str, SAMPLE_RATES_HZ))}",
            )
        if not str(url).startswith(("ws://", "wss://")):
            raise InputError(f"DashScope URL must start with wss:// (or ws://), got {url!r}")
        self.voice = voice.strip()
        self.model = model
        self.language = check_language(language)
        self.sample_rate_hz = sample_rate_hz
        self.url = url
        self.volume, self.rate, self.pitch = volume, rate, pitch
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self._api_key_arg = api_key
        self._api_key: str | None = None

    def load(self) -> DashScopeCosyVoiceTTS:
        """Check the key and the service with one WebSocket handshake (no task, nothing billed)."""
        if self._api_key is not None:
            return self
        key = _api_key(self._api_key_arg)
        with self._connected(key):
            pass
        self._api_key = key
        return self

    def synthesize(self, text: str, *, emotion: str | None = None) -> Speech:
        return join_speech(self.stream(text, emotion=emotion), text, self.language, self.sample_rate_hz)

    def stream(self, text: str, *, emotion: str | None = None) -> Iterator[TTSChunk]:
        """Audio frames as DashScope sends them, grouped by the server's sentences."""
        pieces = _text_pieces(text, split_text(text))
        if emotion and emotion != "neutral":
            log.debug("DashScope CosyVoice has no emotion control for cloned voices; %r ignored", emotion)
        if self._api_key is None:
            self.load()
        return self._run_task(pieces, collapse_whitespace(text))

    def close(self) -> None:
        self._api_key = None

    @contextmanager
    def _connected(self, key: str) -> Iterator:
        """An open WebSocket (closed on exit); connection failures become one-line errors."""
        try:
            from websockets.exceptions import InvalidStatus, WebSocketException
            from websockets.sync.client import connect
        except ImportError as error:
            raise EngineUnavailable(
                "DashScope CosyVoice needs the Python package websockets", "pip install websockets"
            ) from error
        try:
            connection = connect(
                self.url,
                additional_headers={"Authorization": f"bearer {key}"},
                open_timeout=self.open_timeout_s,
                max_size=None,
            )
        except InvalidStatus as error:
            status = error.response.status_code
            if status in (401, 403):
                raise EngineUnavailable(
                    f"DashScope rejected the API key (HTTP {status})", KEY_HINT
                ) from error
            raise EngineUnavailable(
                f"DashScope refused the connection to {self.url} (HTTP {status})", f"see {DOCS}"
            ) from error
        except (OSError, TimeoutError, WebSocketException) as error:
            raise EngineUnavailable(
                f"cannot reach DashScope at {self.url} ({_one_line(error) or type(error).__name__})",
                "check the network connection, or the URL given with --dashscope-url",
            ) from error
        with connection:
            yield connection

    def _run_task(self, pieces: list[str], full_text: str) -> Iterator[TTSChunk]:
        from websockets.exceptions import ConnectionClosed

        task_id = str(uuid.uuid4())
        with self._connected(self._api_key) as connection:
            try:
                connection.send(json.dumps(self._command("run-task", task_id, self._run_payload())))
                self._wait_started(connection)
                for piece in pieces:
                    continue_task = self._command("continue-task", task_id, {"input": {"text": piece}})
                    connection.send(json.dumps(continue_task))
                connection.send(json.dumps(self._command("finish-task", task_id, {"input": {}})))
                yield from self._receive_audio(connection, full_text)
            except ConnectionClosed as error:
                raise EngineUnavailable(
                    f"DashScope closed the connection before the task finished ({_one_line(error)})",
                    f"see {DOCS}",
                ) from error
            except TimeoutError as error:
                raise EngineUnavailable(
                    f"DashScope sent nothing for {self.read_timeout_s:g} s", "check the network, or try again"
                ) from error

    def _run_payload(self) -> dict:
        return {
            "task_group": "audio",
            "task": "tts",
            "function": "SpeechSynthesizer",
            "model": self.model,
            "parameters": {
                "text_type": "PlainText",
                "voice": self.voice,
                "format": "pcm",
                "sample_rate": self.sample_rate_hz,
                "volume": self.volume,
                "rate": self.rate,
                "pitch": self.pitch,
            },
            "input": {},
        }

    @staticmethod
    def _command(action: str, task_id: str, payload: dict) -> dict:
        return {"header": {"action": action, "task_id": task_id, "streaming": "duplex"}, "payload": payload}

    def _wait_started(self, connection) -> None:
        while True:
            message = connection.recv(timeout=self.read_timeout_s)
            if isinstance(message, bytes):
                continue
            event = _event(message)
            if event["name"] == "task-started":
                return
            if event["name"] == "task-failed":
                raise _task_failed(event)

    def _receive_audio(self, connection, full_text: str) -> Iterator[TTSChunk]:
        """Binary frames belong to the sentence opened by the last sentence-begin event."""
        decoder = Pcm16Decoder()
        assembler = SentenceAssembler(full_text, self.language, self.sample_rate_hz)
        while True:
            message = connection.recv(timeout=self.read_timeout_s)
            if isinstance(message, bytes):
                yield from assembler.add(decoder.feed(message))
                continue
            event = _event(message)
            if event["name"] == "task-failed":
                raise _task_failed(event)
            if event["name"] == "task-finished":
                decoder.finish()
                if not assembler.empty:
                    yield from assembler.finish()
                return
            output = event["payload"].get("output") or {}
            if output.get("type") == "sentence-begin":
                if not assembler.empty:  # audio that came before any sentence event
                    yield from assembler.finish()
                sentence = collapse_whitespace(output.get("original_text") or "") or full_text
                assembler = SentenceAssembler(sentence, self.language, self.sample_rate_hz)
            elif output.get("type") == "sentence-end":
                yield from assembler.finish()


def _event(message: str) -> dict:
    try:
        data = json.loads(message)
        header = data["header"]
        return {"name": header.get("event", ""), "header": header, "payload": data.get("payload") or {}}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise EngineUnavailable(
            f"DashScope sent an unexpected message: {_one_line(message, 120)}", f"see {DOCS}"
        ) from error


def _task_failed(event: dict) -> EngineUnavailable:
    code = _one_line(event["header"].get("error_code") or "unknown error")
    message = _one_line(event["header"].get("error_message") or "")
    text = f"DashScope CosyVoice task failed: {code}" + (f": {message}" if message else "")
    if "apikey" in code.lower().replace("_", "") or "unauthor" in code.lower():
        return EngineUnavailable(text, KEY_HINT)
    return EngineUnavailable(
        text, f"check the voice id and model (an enrolled voice works only with its model); see {DOCS}"
    )


def _text_pieces(text: str, sentences: list[str]) -> list[str]:
    """continue-task texts: the text as it is when short, else sentences packed to MAX_TEXT_CHARS."""
    if len(collapse_whitespace(text)) <= MAX_TEXT_CHARS:
        return [collapse_whitespace(text)]
    pieces: list[str] = []
    for sentence in sentences:
        if pieces and len(pieces[-1]) + 1 + len(sentence) <= MAX_TEXT_CHARS:
            pieces[-1] = f"{pieces[-1]} {sentence}"
        else:
            pieces.append(sentence)
    return pieces


_PREFIX = re.compile(r"^[A-Za-z0-9]{1,10}$")


def enroll_voice(
    reference_url: str,
    *,
    api_key: str | None = None,
    target_model: str = "cosyvoice-v2",
    prefix: str = "avatar",
    url: str = DEFAULT_ENROLL_URL,
    timeout_s: float = 60.0,
) -> str:
    """Enroll a 10-20 s sample hosted at a public `reference_url`; returns the voice id to pass as
    `voice`. DashScope downloads the sample itself, so a local path cannot be enrolled: upload it
    somewhere reachable (e.g. an object-storage link) first. Use the same `target_model` for
    synthesis later."""
    if not isinstance(reference_url, str) or not reference_url.startswith(("http://", "https://")):
        raise InputError(
            f"DashScope voice enrollment needs a public http(s) URL of the sample, got {reference_url!r}",
            "upload the 10-20 s sample somewhere public (e.g. a signed object-storage link) and pass that URL",
        )
    if not _PREFIX.match(prefix):
        raise InputError(f"voice prefix must be 1-10 letters or digits, got {prefix!r}")
    import httpx

    body = {
        "model": "voice-enrollment",
        "input": {
            "action": "create_voice",
            "target_model": target_model,
            "prefix": prefix,
            "url": reference_url,
        },
    }
    headers = {"Authorization": f"Bearer {_api_key(api_key)}", "Content-Type": "application/json"}
    try:
        response = httpx.post(url, json=body, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as error:
        raise EngineUnavailable(
            f"cannot reach DashScope at {url} ({_one_line(error)})", "check the network"
        ) from error
    try:
        data = response.json()
    except ValueError:
        data = {}
    if response.status_code in (401, 403):
        raise EngineUnavailable(f"DashScope rejected the API key (HTTP {response.status_code})", KEY_HINT)
    voice_id = (data.get("output") or {}).get("voice_id") if isinstance(data, dict) else None
    if response.status_code != 200 or not voice_id:
        code = _one_line(data.get("code", f"HTTP {response.status_code}")) if isinstance(data, dict) else ""
        message = _one_line(data.get("message", response.text)) if isinstance(data, dict) else ""
        raise EngineUnavailable(
            f"DashScope voice enrollment failed: {code}: {message}",
            "check that the URL is public and the audio is 10-20 s of clean speech",
        )
    return str(voice_id)

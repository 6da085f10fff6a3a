"""CosyVoice zero-shot cloning through the FastAPI server that ships with CosyVoice.

The server is `runtime/python/fastapi/server.py` in the CosyVoice checkout
(`python server.py --port 50000 --model_dir DIR`). Its protocol, as upstream defines it:
- `/inference_zero_shot`: multipart form fields `tts_text`, `prompt_text` and a file field
  `prompt_wav`; `/inference_instruct2`: `tts_text`, `instruct_text`, `prompt_wav`.
- The answer is a streamed body of raw little-endian int16 mono PCM, no header, at the model's
  own rate: the server sends `(tts_speech * 2**15).astype(int16)` of every output.
- Upstream's own client sends GET requests with a form body; later server versions accept POST
  too. GET is the default here because every server version answers it.

Nothing in the answer says the sample rate, so it is a parameter: 24000 Hz for CosyVoice 2 and
3 (their yaml says `sample_rate: 24000`), 22050 Hz for CosyVoice 1 (upstream's client.py
hardcodes 22050 for that reason). The server recomputes the prompt's features on every request
(it has no speaker cache), so each sentence costs a prompt encoding there.

The prompt is uploaded as a 24 kHz WAV: the server's `load_wav` refuses to upsample, and newer
servers read the file at 24 kHz as well as 16 kHz.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from avatar.core.errors import EngineUnavailable, InputError
from avatar.core.types import Speech, TTSChunk
from voices.cosyvoice_common import (
    Pcm16Decoder,
    ReferenceVoice,
    SentenceAssembler,
    check_language,
    instruct_text_for,
    join_speech,
    load_reference,
    prompt_text_for,
    split_text,
)

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:50000"
START_HINT = (
    "start it with `python runtime/python/fastapi/server.py --port 50000 --model_dir DIR` in your "
    "CosyVoice checkout, or check --cosyvoice-url"
)


class CosyVoiceHTTPTTS:
    """Cloned speech from a running CosyVoice FastAPI server; one request per sentence."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        reference_wav: str | Path,
        reference_text: str,
        language: str = "zh",
        model_version: int = 2,
        sample_rate_hz: int | None = None,
        http_method: str = "GET",
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 120.0,
    ) -> None:
        """`model_version` (1, 2 or 3) is the model the server runs: it sets the default sample
        rate, CosyVoice 3's prompt prefix and the instruction format for emotions.
        `read_timeout_s` bounds the wait for each piece of audio (the server's first piece comes
        only after a whole segment is synthesized)."""
        if not str(base_url).startswith(("http://", "https://")):
            raise InputError(f"CosyVoice server URL must start with http:// or https://, got {base_url!r}")
        if model_version not in (1, 2, 3):
            raise InputError(f"CosyVoice model_version must be 1, 2 or 3, got {model_version}")
        if http_method.upper() not in ("GET", "POST"):
            raise InputError(f"http_method must be GET or POST, got {http_method!r}")
        self.base_url = str(base_url).rstrip("/")
        self.reference_wav = Path(reference_wav)
        self.reference_text = reference_text
        self.language = check_language(language)
        self.model_version = model_version
        self.sample_rate_hz = int(sample_rate_hz or (22050 if model_version == 1 else 24000))
        self.http_method = http_method.upper()
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self._client = None
        self._voice: ReferenceVoice | None = None
        self._prompt_wav: bytes = b""

    def load(self) -> CosyVoiceHTTPTTS:
        """Check the sample and that the server answers at all (any HTTP status will do)."""
        if self._client is not None:
            return self
        try:
            import httpx
        except ImportError as error:
            raise EngineUnavailable("the CosyVoice server client needs httpx", "pip install httpx") from error
        voice = load_reference(self.reference_wav, self.reference_text)
        client = httpx.Client(timeout=httpx.Timeout(self.read_timeout_s, connect=self.connect_timeout_s))
        try:
            client.get(self.base_url + "/docs")
        except httpx.TransportError as error:
            client.close()
            raise self._unreachable(error) from error
        self._client, self._voice = client, voice
        self._prompt_wav = voice.wav_bytes()
        return self

    def synthesize(self, text: str, *, emotion: str | None = None) -> Speech:
        return join_speech(self.stream(text, emotion=emotion), text, self.language, self.sample_rate_hz)

    def stream(self, text: str, *, emotion: str | None = None) -> Iterator[TTSChunk]:
        """Audio as the server sends it; each chunk carries its sentence, the last one is_last."""
        sentences = split_text(text)
        if self._client is None:
            self.load()
        return self._sentences(sentences, emotion)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _sentences(self, sentences: list[str], emotion: str | None) -> Iterator[TTSChunk]:
        for sentence in sentences:
            yield from self._sentence(sentence, emotion)

    def _sentence(self, sentence: str, emotion: str | None) -> Iterator[TTSChunk]:
        import httpx

        instruction = instruct_text_for(self.model_version, emotion)
        if instruction is None:
            endpoint = "/inference_zero_shot"
            fields = {
                "tts_text": sentence,
                "prompt_text": prompt_text_for(self.model_version, self._voice.text),
            }
        else:
            endpoint = "/inference_instruct2"
            fields = {"tts_text": sentence, "instruct_text": instruction}
        files = {"prompt_wav": ("prompt.wav", self._prompt_wav, "audio/wav")}
        url = self.base_url + endpoint
        assembler = SentenceAssembler(sentence, self.language, self.sample_rate_hz)
        decoder = Pcm16Decoder()
        try:
            with self._client.stream(self.http_method, url, data=fields, files=files) as response:
                if response.status_code != 200:
                    raise self._http_error(response, endpoint)
                for data in response.iter_bytes():
                    yield from assembler.add(decoder.feed(data))
        except httpx.TimeoutException as error:
            raise EngineUnavailable(
                f"CosyVoice server at {self.base_url} did not answer within {self.read_timeout_s:g} s",
                "check the server's log, or raise read_timeout_s for slow hardware",
            ) from error
        except httpx.TransportError as error:
            raise self._unreachable(error) from error
        decoder.finish()
        yield from assembler.finish()

    def _unreachable(self, error: Exception) -> EngineUnavailable:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        return EngineUnavailable(f"cannot reach CosyVoice server at {self.base_url} ({reason})", START_HINT)

    def _http_error(self, response, endpoint: str) -> EngineUnavailable:
        response.read()
        detail = " ".join(response.text.split())[:200]
        status = response.status_code
        if status == 404:
            return EngineUnavailable(
                f"CosyVoice server at {self.base_url} has no {endpoint} (HTTP 404)",
                "update the checkout that runs the server (git pull), or speak without emotion",
            )
        if status == 405:
            other = "POST" if self.http_method == "GET" else "GET"
            return EngineUnavailable(
                f"CosyVoice server at {self.base_url} refuses {self.http_method} on {endpoint} (HTTP 405)",
                f"use http_method='{other}'",
            )
        return EngineUnavailable(
            f"CosyVoice server at {self.base_url} failed on {endpoint} (HTTP {status}: {detail})",
            "see the server's log for the cause",
        )

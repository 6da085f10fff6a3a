"""Stand-ins for CosyVoice: a fake checkout package and a fake FastAPI server (DashScope's are in
tests/support/fake_dashscope.py).

Besides the real-code tier (tests/test_cosyvoice_real.py, CosyVoice 2 as vendored by the
`cosyvoice2-fr-infer` wheel), the tests write a small `cosyvoice` package that mirrors the public API of FunAudioLLM/CosyVoice's
`cosyvoice/cli/cosyvoice.py` and `cosyvoice/cli/frontend.py`: class names, constructor and method
signatures, `sample_rate`, `frontend.spk2info`, `save_spkinfo()` writing `spk2info.pt`, the
generator of `{'tts_speech': tensor (1, n)}`, and two upstream behaviours the adapter must survive
(the constructor downloading a missing model dir, and `frontend_instruct2` deleting keys from a
cached speaker entry). Two flavours of the prompt argument exist upstream and both are written:
`prompt_wav` (a file path, current API) and `prompt_speech_16k` (a 16 kHz tensor, older API).

The fake servers bind 127.0.0.1 on a free port and run in a thread for the length of a `with`.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np


def fake_speech(text: str, sample_rate_hz: int, seconds_per_char: float = 0.05) -> np.ndarray:
    """Deterministic 'speech' for `text`: 0.2 s + 50 ms per character of a text-dependent tone."""
    duration_s = 0.2 + seconds_per_char * len(text)
    t = np.arange(int(duration_s * sample_rate_hz)) / sample_rate_hz
    frequency_hz = 150 + sum(map(ord, text)) % 100
    return (0.3 * np.sin(2 * np.pi * frequency_hz * t)).astype(np.float32)


def fake_pcm16(text: str, sample_rate_hz: int, seconds_per_char: float = 0.05) -> bytes:
    """What upstream's server sends for `text`: (speech * 2**15) as little-endian int16."""
    return (fake_speech(text, sample_rate_hz, seconds_per_char) * (2**15)).astype("<i2").tobytes()


def sentence_ends(texts: list[str]) -> list[bool]:
    """For consecutive chunk texts, True where the next chunk belongs to another sentence."""
    return [text != following for text, following in zip(texts, [*texts[1:], None], strict=True)]


def write_voice(path: Path, seconds: float, sample_rate_hz: int = 22050, silent: bool = False) -> Path:
    """A speech-like recording: a 140 Hz harmonic voice with syllable-rate loudness changes."""
    import soundfile

    t = np.arange(int(seconds * sample_rate_hz)) / sample_rate_hz
    voice = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 8))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)
    pcm = np.zeros_like(t) if silent else 0.2 * voice * envelope
    soundfile.write(str(path), pcm.astype(np.float32), sample_rate_hz, subtype="PCM_16")
    return path


# -- the fake checkout ---------------------------------------------------------------------------

_FRONTEND = '''"""Stand-in for cosyvoice/cli/frontend.py (written by tests/fake_cosyvoice.py)."""
import os
import re

import soundfile
import torch


def encode(text):
    return torch.tensor([[ord(c) for c in text]], dtype=torch.int32)


def decode(tokens):
    return "".join(chr(v) for v in tokens.flatten().tolist())


class CosyVoiceFrontEnd:
    def __init__(self, spk2info, prompt_api):
        self.device = torch.device("cpu")
        self.prompt_api = prompt_api
        self.spk2info = torch.load(spk2info, map_location=self.device) if os.path.exists(spk2info) else {}
        self.extractions = []  # prompt texts whose speaker features were computed (the costly step)
        self.prompts = []  # what the prompt argument looked like each time

    def text_normalize(self, text, split=True, text_frontend=True):
        if "<|" in text and "|>" in text:
            text_frontend = False
        if text_frontend is False or text == "":
            return [text] if split is True else text
        if split is False:
            return text
        return [part for part in re.split(r"(?<=[，,])\\s*", text) if part.strip()] or [text]

    def _prompt_seconds(self, prompt):
        if self.prompt_api == "prompt_wav":
            assert isinstance(prompt, str) and os.path.isfile(prompt), f"prompt_wav must be a file, got {prompt!r}"
            data, rate = soundfile.read(prompt, dtype="float32")
            # upstream load_wav(prompt_wav, 24000) asserts the file rate is above the target
            assert rate >= 24000, f"wav sample rate {rate} must be greater than 24000"
            self.prompts.append(("file", rate, len(data)))
            return len(data) / rate
        assert isinstance(prompt, torch.Tensor) and prompt.dim() == 2 and prompt.shape[0] == 1, prompt
        self.prompts.append(("tensor", 16000, prompt.shape[1]))
        return prompt.shape[1] / 16000

    def _features(self, prompt_text, prompt):
        seconds = self._prompt_seconds(prompt)
        assert seconds <= 30, "do not support extract speech token for audio longer than 30s"
        self.extractions.append(prompt_text)
        tokens = torch.arange(int(seconds * 25), dtype=torch.int32).unsqueeze(0)
        length = torch.tensor([tokens.shape[1]], dtype=torch.int32)
        prompt_tokens = encode(prompt_text)
        return {
            "prompt_text": prompt_tokens, "prompt_text_len": torch.tensor([prompt_tokens.shape[1]]),
            "llm_prompt_speech_token": tokens, "llm_prompt_speech_token_len": length,
            "flow_prompt_speech_token": tokens, "flow_prompt_speech_token_len": length,
            "prompt_speech_feat": torch.zeros(1, 2 * tokens.shape[1], 80), "prompt_speech_feat_len": 2 * length,
            "llm_embedding": torch.ones(1, 192), "flow_embedding": torch.ones(1, 192),
        }

    def frontend_zero_shot(self, tts_text, prompt_text, prompt, resample_rate, zero_shot_spk_id):
        if zero_shot_spk_id == "":
            model_input = self._features(prompt_text, prompt)
        else:
            model_input = self.spk2info[zero_shot_spk_id]  # upstream hands out the cached dict itself
        model_input["text"] = encode(tts_text)
        model_input["text_len"] = torch.tensor([len(tts_text)])
        return model_input

    def frontend_instruct2(self, tts_text, instruct_text, prompt, resample_rate, zero_shot_spk_id=""):
        model_input = self.frontend_zero_shot(tts_text, instruct_text, prompt, resample_rate, zero_shot_spk_id)
        del model_input["llm_prompt_speech_token"]  # upstream deletes these from the cached dict too
        del model_input["llm_prompt_speech_token_len"]
        return model_input
'''

_MODEL = '''"""Stand-in for cosyvoice/cli/cosyvoice.py (written by tests/fake_cosyvoice.py)."""
import os
import re

import matcha  # noqa: F401  upstream's yaml imports matcha from third_party/Matcha-TTS
import torch

from cosyvoice.cli.frontend import CosyVoiceFrontEnd, decode
from tests.fake_cosyvoice import fake_speech

PROMPT_API = "__PROMPT_API__"


def snapshot_download(model_id):
    raise AssertionError(f"snapshot_download({model_id!r}) called: upstream would download a model here")


class CosyVoice:
    yaml_name = "cosyvoice.yaml"

    def __init__(self, model_dir, load_jit=False, load_trt=False, fp16=False, trt_concurrent=1):
        self._setup(model_dir, dict(load_jit=load_jit, load_trt=load_trt, fp16=fp16))

    def _setup(self, model_dir, init_kwargs):
        self.model_dir = model_dir
        self.init_kwargs = init_kwargs
        if not os.path.exists(model_dir):
            model_dir = snapshot_download(model_dir)
        hyper_yaml_path = "{}/{}".format(model_dir, self.yaml_name)
        if not os.path.exists(hyper_yaml_path):
            raise ValueError("{} not found!".format(hyper_yaml_path))
        with open(hyper_yaml_path) as f:
            self.sample_rate = int(re.search(r"sample_rate: *(\\d+)", f.read()).group(1))
        self.frontend = CosyVoiceFrontEnd("{}/spk2info.pt".format(model_dir), PROMPT_API)
        self.tts_calls = []
        self.added = []

    def list_available_spks(self):
        return list(self.frontend.spk2info.keys())

    def save_spkinfo(self):
        torch.save(self.frontend.spk2info, "{}/spk2info.pt".format(self.model_dir))

    def _add(self, prompt_text, prompt, zero_shot_spk_id):
        assert zero_shot_spk_id != "", "do not use empty zero_shot_spk_id"
        model_input = self.frontend.frontend_zero_shot("", prompt_text, prompt, self.sample_rate, "")
        del model_input["text"]
        del model_input["text_len"]
        self.frontend.spk2info[zero_shot_spk_id] = model_input
        self.added.append(zero_shot_spk_id)
        return True

    def _zero_shot(self, tts_text, prompt_text, prompt, zero_shot_spk_id, stream, speed):
        prompt_text = self.frontend.text_normalize(prompt_text, split=False)
        for i in self.frontend.text_normalize(tts_text, split=True):
            model_input = self.frontend.frontend_zero_shot(i, prompt_text, prompt, self.sample_rate, zero_shot_spk_id)
            yield from self._tts("zero_shot", model_input, stream, speed)

    def _instruct2(self, tts_text, instruct_text, prompt, zero_shot_spk_id, stream, speed):
        for i in self.frontend.text_normalize(tts_text, split=True):
            model_input = self.frontend.frontend_instruct2(i, instruct_text, prompt, self.sample_rate, zero_shot_spk_id)
            yield from self._tts("instruct2", model_input, stream, speed)

    def _tts(self, kind, model_input, stream, speed):
        text = decode(model_input["text"])
        self.tts_calls.append({
            "kind": kind, "text": text, "prompt_text": decode(model_input["prompt_text"]),
            "llm_prompt": "llm_prompt_speech_token" in model_input, "stream": stream, "speed": speed,
        })
        pcm = fake_speech(text, self.sample_rate)
        step = int(0.25 * self.sample_rate) if stream else len(pcm)
        for start in range(0, len(pcm), step):
            yield {"tts_speech": torch.from_numpy(pcm[start:start + step].copy()).unsqueeze(0)}


if PROMPT_API == "prompt_wav":  # current upstream: prompts are file paths
    def _add_zero_shot_spk(self, prompt_text, prompt_wav, zero_shot_spk_id):
        return self._add(prompt_text, prompt_wav, zero_shot_spk_id)

    def _inference_zero_shot(self, tts_text, prompt_text, prompt_wav, zero_shot_spk_id="", stream=False,
                             speed=1.0, text_frontend=True):
        return self._zero_shot(tts_text, prompt_text, prompt_wav, zero_shot_spk_id, stream, speed)

    def _inference_instruct2(self, tts_text, instruct_text, prompt_wav, zero_shot_spk_id="", stream=False,
                             speed=1.0, text_frontend=True):
        return self._instruct2(tts_text, instruct_text, prompt_wav, zero_shot_spk_id, stream, speed)
else:  # older upstream: prompts are 16 kHz tensors, instruct2 takes no speaker id
    def _add_zero_shot_spk(self, prompt_text, prompt_speech_16k, zero_shot_spk_id):
        return self._add(prompt_text, prompt_speech_16k, zero_shot_spk_id)

    def _inference_zero_shot(self, tts_text, prompt_text, prompt_speech_16k, zero_shot_spk_id="", stream=False,
                             speed=1.0, text_frontend=True):
        return self._zero_shot(tts_text, prompt_text, prompt_speech_16k, zero_shot_spk_id, stream, speed)

    def _inference_instruct2(self, tts_text, instruct_text, prompt_speech_16k, stream=False, speed=1.0,
                             text_frontend=True):
        return self._instruct2(tts_text, instruct_text, prompt_speech_16k, "", stream, speed)

CosyVoice.add_zero_shot_spk = _add_zero_shot_spk
CosyVoice.inference_zero_shot = _inference_zero_shot


class CosyVoice2(CosyVoice):
    yaml_name = "cosyvoice2.yaml"

    def __init__(self, model_dir, load_jit=False, load_trt=False, load_vllm=False, fp16=False, trt_concurrent=1):
        self._setup(model_dir, dict(load_jit=load_jit, load_trt=load_trt, load_vllm=load_vllm, fp16=fp16))

    inference_instruct2 = _inference_instruct2


class CosyVoice3(CosyVoice2):
    yaml_name = "cosyvoice3.yaml"

    def __init__(self, model_dir, load_trt=False, load_vllm=False, fp16=False, trt_concurrent=1):
        self._setup(model_dir, dict(load_trt=load_trt, load_vllm=load_vllm, fp16=fp16))


def AutoModel(**kwargs):
    if not os.path.exists(kwargs["model_dir"]):
        kwargs["model_dir"] = snapshot_download(kwargs["model_dir"])
    for name, cls in (("cosyvoice.yaml", CosyVoice), ("cosyvoice2.yaml", CosyVoice2), ("cosyvoice3.yaml", CosyVoice3)):
        if os.path.exists("{}/{}".format(kwargs["model_dir"], name)):
            return cls(**kwargs)
    raise TypeError("No valid model type found!")
'''


def write_fake_checkout(root: Path, prompt_api: str = "prompt_wav") -> Path:
    """A CosyVoice-shaped checkout at `root` whose package imports only numpy, torch and soundfile."""
    assert prompt_api in ("prompt_wav", "prompt_speech_16k")
    files = {
        "cosyvoice/__init__.py": "",
        "cosyvoice/cli/__init__.py": "",
        "cosyvoice/cli/frontend.py": _FRONTEND,
        "cosyvoice/cli/cosyvoice.py": _MODEL.replace("__PROMPT_API__", prompt_api),
        "third_party/Matcha-TTS/matcha/__init__.py": "",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def write_model_dir(root: Path, version: int = 3) -> Path:
    """A model folder with the files upstream's constructor opens (contents are placeholders)."""
    yaml_name, tokenizer, rate = {
        1: ("cosyvoice.yaml", "speech_tokenizer_v1.onnx", 22050),
        2: ("cosyvoice2.yaml", "speech_tokenizer_v2.onnx", 24000),
        3: ("cosyvoice3.yaml", "speech_tokenizer_v3.onnx", 24000),
    }[version]
    root.mkdir(parents=True, exist_ok=True)
    (root / yaml_name).write_text(f"sample_rate: {rate}\n", encoding="utf-8")
    for name in ("llm.pt", "flow.pt", "hift.pt", "campplus.onnx", tokenizer):
        (root / name).write_bytes(b"placeholder")
    if version >= 2:
        (root / "CosyVoice-BlankEN").mkdir(exist_ok=True)
    return root


# -- the fake FastAPI server (runtime/python/fastapi/server.py) ----------------------------------


class FakeCosyVoiceServer:
    """Upstream's endpoints: form fields + a prompt_wav file in, raw int16 PCM streamed out.

    The PCM is written in `piece_bytes` pieces (odd on purpose: sample boundaries do not survive
    HTTP), so a client sees several chunks per request. With `sentence_s` it speaks on a clock, as
    a streaming server does: the first piece after `first_piece_s`, the last at `sentence_s`, the
    others evenly between (bench/cosyvoice_streaming.py). Each request records how many pieces
    went out and whether the client hung up before the end (`aborted`).
    """

    def __init__(
        self,
        sample_rate_hz: int = 24000,
        piece_bytes: int = 4001,
        status: int = 200,
        stall_s: float = 0.0,
        methods: tuple[str, ...] = ("GET", "POST"),
        endpoints: tuple[str, ...] = ("/inference_zero_shot", "/inference_instruct2"),
        first_piece_s: float = 0.0,
        sentence_s: float | None = None,
        seconds_per_char: float = 0.05,
        port: int = 0,
    ) -> None:
        self.first_piece_s, self.sentence_s, self.port = first_piece_s, sentence_s, port
        self.seconds_per_char = seconds_per_char
        self.sample_rate_hz = sample_rate_hz
        self.piece_bytes = piece_bytes
        self.status = status
        self.stall_s = stall_s
        self.methods = methods
        self.endpoints = endpoints
        self.requests: list[dict] = []
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None

    def __enter__(self) -> FakeCosyVoiceServer:
        ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve(ready)), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake CosyVoice server did not start")
        return self

    def __exit__(self, *exc_info) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _serve(self, ready: threading.Event) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/docs", self._docs)
        for endpoint in self.endpoints:
            app.router.add_route("*", endpoint, self._inference)
        runner = web.AppRunner(app, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        ready.set()
        await self._stop.wait()
        await runner.cleanup()

    async def _docs(self, request):
        from aiohttp import web

        return web.Response(text="fake CosyVoice server")

    async def _inference(self, request):
        from aiohttp import web

        if request.method not in self.methods:
            return web.Response(status=405, text='{"detail":"Method Not Allowed"}')
        fields: dict[str, str] = {}
        files: dict[str, bytes] = {}
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            data = await part.read()
            if part.filename is not None:
                files[part.name] = bytes(data)
            else:
                fields[part.name] = bytes(data).decode("utf-8")
        record = {"method": request.method, "path": request.path, "fields": fields, "files": files}
        self.requests.append(record)
        if self.status != 200:
            return web.Response(status=self.status, text="Internal Server Error: fake failure")
        response = web.StreamResponse()
        await response.prepare(request)
        if self.stall_s:
            await asyncio.sleep(self.stall_s)
        pcm = fake_pcm16(fields.get("tts_text", ""), self.sample_rate_hz, self.seconds_per_char)
        pieces = [pcm[start : start + self.piece_bytes] for start in range(0, len(pcm), self.piece_bytes)]
        record.update(pieces=len(pieces), pieces_sent=0, aborted=False)
        started_s = asyncio.get_running_loop().time()
        try:
            for index, piece in enumerate(pieces):
                await self._wait_for_piece(index, len(pieces), started_s)
                await response.write(piece)
                record["pieces_sent"] = index + 1
            await response.write_eof()
        except ConnectionResetError:  # the client closed the stream (a barge-in)
            record["aborted"] = True
        except asyncio.CancelledError:  # the same, where the server cancels the handler
            record["aborted"] = True
            raise
        return response

    async def _wait_for_piece(self, index: int, count: int, started_s: float) -> None:
        if self.sentence_s is None:
            await asyncio.sleep(self.first_piece_s if index == 0 else 0.002)
            return
        share = index / max(count - 1, 1)
        due_s = started_s + self.first_piece_s + (self.sentence_s - self.first_piece_s) * share
        await asyncio.sleep(max(0.0, due_s - asyncio.get_running_loop().time()))

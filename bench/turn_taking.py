"""Turn taking on real speech: does a rule cut the speaker off inside a pause, and how long does it
wait after the real end? The fixed 500 ms silence rule against Smart Turn (avatar.turns.smart_turn).

    .venv/bin/python bench/turn_taking.py [--pauses-ms 300,400,500,600] [--out FILE.json]

Trials, from the eval speech clips (../shared/eval/speech, English and Mandarin):
- *complete*: the whole utterance, then silence;
- *pause*: the utterance with 300-600 ms of silence inserted at a word boundary (Whisper's word
  timestamps, moved to the quietest 10 ms within 80 ms), so the sentence is unfinished when the
  pause starts. Inserted and surrounding "silence" is noise at the clip's own floor level (its
  10th-percentile 20 ms RMS), so the pause sounds like the recording, not like a dropout.
Each trial streams in 20 ms chunks through what `avatar serve` runs: Silero VAD (speech over after
120 ms), `TurnDetector`, and for Smart Turn the audio the session would give it (from 0.5 s before
the turn's onset to the moment of the check, last 8 s).

No pause is inserted where Whisper heard a sentence end (those clips hold two sentences); the
recordings' own pauses stay as they are.

Reported per language and rule: *cut in pause* = a turn ended while the inserted pause lasted (or
up to 300 ms after speech resumed, before the VAD could know); *ended early* = any turn ended
before the utterance's real end (the recordings' own pauses count too, sentence ends included);
*delay* = decision time - the real end of the sound (energy reference of bench/vad_latency.py),
plus the measured inference time when the model ended the turn at once, over every trial's last
turn (its mean too, which counts the turns left to the fallback). Smart Turn's thresholds are per
language, as the session applies them once it knows the language (`--lang`, or the turn heard
before): tuned on the even word boundaries (see `tune`), reported on the odd ones (the complete
utterances are in both halves: there are only 7).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import statistics
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from vad_latency import SPEECH_CLIPS, SPEECH_DIR, speech_bounds_by_energy  # noqa: E402

RATE_HZ = 16000
CHUNK_SAMPLES = 320  # 20 ms, as the WebRTC microphone arrives
LEAD_S, TRAIL_S = 0.6, 2.5
SPECULATE_AFTER_SILENCE_MS = 120.0  # the server's VAD hangover (avatar/live/server.py)
SILENCE_RULE_MS = 500.0
GRID_CHECK_MS = (150.0, 200.0, 250.0)
RESUME_GRACE_S = 0.3  # a turn ended this soon after speech resumed still cut the speaker off
GRID_THRESHOLD = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 1.0)
GRID_UNSURE = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.95, 0.97, 0.98, 0.99, 1.0)
GRID_FALLBACK_MS = (1200.0, 1500.0, 2000.0)
QUESTIONS = (  # bench/live_questions.py asks the same
    "What are your opening hours?",
    "How can I return an item?",
    "Do you ship abroad?",
    "Can I pay by card?",
    "Where is your shop?",
)


@dataclass
class Clip:
    name: str
    language: str
    pcm: np.ndarray
    end_s: float  # where the sound really ends (energy reference)
    floor_rms: float
    boundaries: list[int] = field(default_factory=list)  # cut points (samples) between words


@dataclass
class Trial:
    clip: Clip
    boundary_index: int | None  # None: the complete utterance
    pause_ms: float
    pcm: np.ndarray
    true_end_s: float
    cut_s: float | None = None
    trace: list = field(default_factory=list)  # per chunk: (VAD events, settled stream time, samples heard)


@dataclass
class Rule:
    """The silence rule (no thresholds), or Smart Turn with (complete above, unsure above) per
    language ("" for any language not listed)."""

    name: str
    thresholds: dict[str, tuple[float, float]] | None = None
    fallback_ms: float = 1500.0
    check_ms: float = 200.0

    def detector(self):
        from avatar.turns.turn_detector import TurnDetector

        if self.thresholds is None:
            return TurnDetector(min_turn_s=0.2, end_silence_ms=SILENCE_RULE_MS)
        return TurnDetector(
            min_turn_s=0.2,
            end_silence_ms=self.fallback_ms,
            check_after_silence_ms=self.check_ms,
            unsure_silence_ms=SILENCE_RULE_MS,
        )

    def verdict(self, probability: float, language: str) -> str:
        complete, unsure = self.thresholds.get(language) or self.thresholds[""]
        if probability > complete:
            return "complete"
        return "unsure" if probability > unsure else "incomplete"


def noise(rng: np.random.Generator, seconds: float, rms: float) -> np.ndarray:
    return (rng.standard_normal(round(seconds * RATE_HZ)) * rms).astype(np.float32)


def load_clip(name: str, asr) -> Clip:
    from avatar.core.audio_io import load_audio

    pcm = load_audio(SPEECH_DIR / name, RATE_HZ).pcm
    onset_s, end_s = speech_bounds_by_energy(pcm, RATE_HZ)
    frames = pcm[: len(pcm) // 320 * 320].reshape(-1, 320)
    floor_rms = float(np.percentile(np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1)), 10))
    language = name[:2]
    clip = Clip(name, language, pcm, end_s, floor_rms)
    from avatar.core.types import AudioChunk

    # Word timings as WhisperASR.transcribe_words finds them, with the segments kept: Whisper ends
    # a segment where it hears a sentence end (in English also its punctuation; in Mandarin, a
    # clause). No pause is inserted there: it would not be inside an unfinished sentence.
    segments, _ = asr._run(AudioChunk(pcm, RATE_HZ), language, word_timestamps=True)
    words = [(w, w is seg.words[-1]) for seg in segments for w in seg.words or () if w.word.strip()]
    for (left, segment_end), (right, _) in itertools.pairwise(words):
        middle_s = (left.end + right.start) / 2
        sentence_end = segment_end or left.word.strip()[-1] in ".?!。？！"
        if onset_s + 0.3 < middle_s < end_s - 0.3 and not sentence_end:
            clip.boundaries.append(quietest_point(pcm, middle_s))
    clip.boundaries = sorted(set(clip.boundaries))
    return clip


def quietest_point(pcm: np.ndarray, around_s: float, reach_s: float = 0.08) -> int:
    """The centre of the quietest 10 ms within `reach_s` of `around_s`: a cut between sounds."""
    centre = round(around_s * RATE_HZ)
    candidates = range(max(centre - round(reach_s * RATE_HZ), 80), centre + round(reach_s * RATE_HZ), 40)
    return min(candidates, key=lambda i: float(np.sum(pcm[i - 80 : i + 80] ** 2)))


def make_trials(clip: Clip, pauses_ms: list[float]) -> list[Trial]:
    rng = np.random.default_rng(zlib.crc32(clip.name.encode()))
    lead, trail = noise(rng, LEAD_S, clip.floor_rms), noise(rng, TRAIL_S, clip.floor_rms)
    trials = [Trial(clip, None, 0.0, np.concatenate([lead, clip.pcm, trail]), LEAD_S + clip.end_s)]
    for index, cut in enumerate(clip.boundaries):
        for pause_ms in pauses_ms:
            gap = noise(rng, pause_ms / 1000, clip.floor_rms)
            pcm = np.concatenate([lead, clip.pcm[:cut], gap, clip.pcm[cut:], trail])
            cut_s = LEAD_S + cut / RATE_HZ
            trials.append(Trial(clip, index, pause_ms, pcm, LEAD_S + clip.end_s + pause_ms / 1000, cut_s))
    return trials


def trace_vad(trial: Trial, vad) -> None:
    from avatar.core.types import AudioChunk

    vad.reset()
    for offset in range(0, len(trial.pcm), CHUNK_SAMPLES):
        events = vad.process(AudioChunk(trial.pcm[offset : offset + CHUNK_SAMPLES], RATE_HZ))
        trial.trace.append((events, vad.settled_until_s, min(offset + CHUNK_SAMPLES, len(trial.pcm))))


class ScoreCache:
    """Smart Turn's probability per distinct audio window: trials share prefixes, rules share all,
    and a rerun reads them back from `path` (keyed by the audio's hash)."""

    def __init__(self, model, path: Path | None = None) -> None:
        self.model = model
        self.path = path
        self.scores: dict[str, tuple[float, float]] = {}
        if path is not None and path.is_file():
            self.scores = {key: tuple(value) for key, value in json.loads(path.read_text()).items()}

    def score(self, window: np.ndarray) -> tuple[float, float]:
        from avatar.core.types import AudioChunk

        key = hashlib.blake2b(window.tobytes(), digest_size=16).hexdigest()
        if key not in self.scores:
            prediction = self.model.predict(AudioChunk(window, RATE_HZ))
            self.scores[key] = (prediction.probability_complete, prediction.latency_ms)
        return self.scores[key]

    def save(self) -> None:
        if self.path is not None:
            self.path.write_text(json.dumps(self.scores))


def simulate(
    trial: Trial, rule: Rule, cache: ScoreCache | None, checks: list | None = None
) -> list[tuple[float, float, str]]:
    """The turn ends of one trial: (end of speech s, decision s incl. inference, decided by).
    `checks` collects (check time s, probability) when given."""
    from avatar.core.types import TurnEndCheck, UserSpeechStarted, UserTurnEnded
    from avatar.turns.smart_turn import WINDOW_SAMPLES, turn_audio_start

    detector, ends, user_start = rule.detector(), [], 0
    for events, settled_s, heard in trial.trace:
        pending = detector.process(events, settled_s)
        while pending:
            item = pending.pop(0)
            if isinstance(item, UserSpeechStarted):
                user_start = item.sample_index
            elif isinstance(item, TurnEndCheck):
                start = max(turn_audio_start(user_start), heard - WINDOW_SAMPLES)
                probability, latency_ms = cache.score(trial.pcm[start:heard])
                if checks is not None:
                    checks.append((item.at_s, probability))
                decided = detector.decide(item, rule.verdict(probability, trial.clip.language))
                for ended in decided:  # ended at once: the inference time is part of the wait
                    ends.append((ended.end_s, ended.confirmed_at_s + latency_ms / 1000, "model"))
            elif isinstance(item, UserTurnEnded):
                ends.append((item.end_s, item.confirmed_at_s, "silence"))
    return ends


def outcome(trial: Trial, ends: list[tuple[float, float, str]]) -> dict:
    before_end = [end for end in ends if end[1] < trial.true_end_s - 0.05]
    cut_in_pause = trial.cut_s is not None and any(
        trial.cut_s - 0.2 <= decided < trial.cut_s + trial.pause_ms / 1000 + RESUME_GRACE_S
        for _, decided, _ in before_end
    )
    final = [decided for _, decided, _ in ends if decided >= trial.true_end_s - 0.05]
    return {
        "cut_in_pause": cut_in_pause,
        "cut_before_end": bool(before_end),
        "delay_s": (final[0] - trial.true_end_s) if final else None,
    }


def summarise(trials: list[Trial], rule: Rule, cache: ScoreCache | None) -> dict:
    rows = [(trial, outcome(trial, simulate(trial, rule, cache))) for trial in trials]
    paused = [row for trial, row in rows if trial.cut_s is not None]
    complete = [row for trial, row in rows if trial.cut_s is None]
    delays = [row["delay_s"] for _, row in rows if row["delay_s"] is not None]
    complete_delays = [row["delay_s"] for row in complete if row["delay_s"] is not None]
    return {
        "rule": rule.name,
        "n_pause_trials": len(paused),
        "cut_in_pause": sum(row["cut_in_pause"] for row in paused) / max(len(paused), 1),
        "cut_before_end": sum(row["cut_before_end"] for row in paused) / max(len(paused), 1),
        "n_complete": len(complete),
        "complete_delay_ms": [round(d * 1000) for d in complete_delays],
        "n_delays": len(delays),
        "delay_median_ms": 1000 * statistics.median(delays) if delays else None,
        "delay_mean_ms": 1000 * statistics.mean(delays) if delays else None,
        "delay_p95_ms": 1000 * float(np.percentile(delays, 95)) if delays else None,
    }


def probability_profile(trials_by_language: dict[str, list[Trial]], rule: Rule, cache: ScoreCache) -> dict:
    """Smart Turn's probability when asked inside an inserted pause and at the real end."""
    profile = {}
    for lang, trials in trials_by_language.items():
        in_pause, at_end = [], []
        for trial in trials:
            checks: list = []
            simulate(trial, rule, cache, checks)
            for at_s, probability in checks:
                if (
                    trial.cut_s is not None
                    and trial.cut_s - 0.2 <= at_s < trial.cut_s + trial.pause_ms / 1000
                ):
                    in_pause.append(probability)
                elif at_s >= trial.true_end_s - 0.05:
                    at_end.append(probability)
        profile[lang] = {
            name: {"n": len(ps), "quartiles": [round(float(q), 3) for q in np.percentile(ps, [25, 50, 75])]}
            for name, ps in (("inserted_pause", in_pause), ("real_end", at_end))
            if ps
        }
    return profile


def sweep_english(trials_by_language: dict[str, list[Trial]], cache: ScoreCache, levels: list[float]) -> list:
    """English "end at once" thresholds side by side (unsure 0.1, check 150 ms, fallback 1.2 s as
    shipped), on both halves: cut-offs inside pauses and before the end, median and mean delay."""
    rows = []
    for complete in levels:
        rule = smart_rule(f"en p>{complete:g}", {"en": (complete, 0.1)}, 150.0, 1200.0)
        for half, parity in (("tune", 0), ("report", 1)):
            result = summarise(split(trials_by_language["en"], parity), rule, cache)
            keep = ("cut_in_pause", "cut_before_end", "n_pause_trials", "delay_median_ms", "delay_mean_ms")
            rows.append({"complete_above": complete, "half": half, **{k: result[k] for k in keep}})
    return rows


def question_probabilities(model) -> list[dict]:
    """Smart Turn on spoken questions (the shop FAQ's, synthesized by Piper: the eval recordings are
    narration, not questions), asked after 150 ms of silence as a live session would."""
    from avatar.core.audio_io import resample
    from avatar.core.types import AudioChunk
    from voices.piper_tts import PiperTTS

    tts = PiperTTS().load()
    rows = []
    for text in QUESTIONS:
        speech = tts.synthesize(text)
        pcm = resample(speech.audio.pcm.astype(np.float32), speech.audio.sample_rate_hz, RATE_HZ)
        pcm = np.concatenate(
            [np.zeros(int(0.5 * RATE_HZ), np.float32), pcm, np.zeros(int(0.15 * RATE_HZ), np.float32)]
        )
        prediction = model.predict(AudioChunk(pcm, RATE_HZ), "en")
        rows.append({"question": text, "probability": round(prediction.probability_complete, 3)})
    return rows


def split(trials: list[Trial], parity: int) -> list[Trial]:
    """Complete utterances plus the pause trials at every other word boundary."""
    return [t for t in trials if t.boundary_index is None or t.boundary_index % 2 == parity]


def smart_rule(name: str, thresholds: dict, check_ms: float, fallback_ms: float) -> Rule:
    levels = ", ".join(
        f"{lang or 'any'} p>{c:g} now / p>{u:g} at 500 ms" for lang, (c, u) in thresholds.items()
    )
    return Rule(
        f"{name}: check {check_ms:g} ms; {levels}; else {fallback_ms:g} ms", thresholds, fallback_ms, check_ms
    )


def shipped_rules() -> list[Rule]:
    """What `avatar serve` runs by default (LiveConfig, CALIBRATED_THRESHOLDS): once the session
    knows the language, and before it does (`SmartTurnModel.thresholds_for(None)`)."""
    from dataclasses import fields

    from avatar.engines.live_set import LiveConfig
    from avatar.turns.smart_turn import CALIBRATED_THRESHOLDS, SmartTurnModel

    defaults = {f.name: f.default for f in fields(LiveConfig)}
    check_ms, fallback_ms = defaults["turn_check_silence_ms"], defaults["turn_fallback_silence_ms"]
    known = {lang: (t.complete_above, t.unsure_above) for lang, t in CALIBRATED_THRESHOLDS.items()}
    blend = SmartTurnModel().thresholds_for(None)
    unknown = {"": (blend.complete_above, blend.unsure_above)}
    return [
        smart_rule("shipped, language known", known, check_ms, fallback_ms),
        smart_rule("shipped, language not yet known", unknown, check_ms, fallback_ms),
    ]


def tune(trials_by_language: dict[str, list[Trial]], cache: ScoreCache) -> Rule | None:
    """On the tuning half: per language, the thresholds with the lowest mean delay (it counts the
    turns left to the fallback, which a median hides) among those that cut speakers off inside a
    pause less often than the silence rule by at least one standard error of its rate (a setting
    that merely ties on 124-152 pauses would not hold on the other half); then the check and
    fallback silences (one per session) with the lowest worst-language mean. None when, for some
    check and fallback in every combination, no thresholds qualify in some language."""
    halves = {lang: split(ts, 0) for lang, ts in trials_by_language.items()}
    limits = {}
    for lang, trials in halves.items():
        silence = summarise(trials, Rule("silence"), None)
        rate, n = silence["cut_in_pause"], silence["n_pause_trials"]
        limits[lang] = rate - math.sqrt(rate * (1 - rate) / n)
    pairs = [(c, u) for c in GRID_THRESHOLD for u in GRID_UNSURE if u <= c]
    best, best_worst = None, None
    for check_ms, fallback_ms in itertools.product(GRID_CHECK_MS, GRID_FALLBACK_MS):
        chosen, worst = {}, 0.0
        for lang, trials in halves.items():
            options = []
            for pair in pairs:
                result = summarise(trials, Rule("", {"": pair}, fallback_ms, check_ms), cache)
                if result["cut_in_pause"] <= limits[lang]:
                    options.append((result["delay_mean_ms"], pair))
            if not options:
                break
            mean_ms, chosen[lang] = min(options)
            worst = max(worst, mean_ms)
        else:
            if best_worst is None or worst < best_worst:
                best, best_worst = smart_rule("tuned", chosen, check_ms, fallback_ms), worst
    return best


def inference_alone(model, trials_by_language: dict[str, list[Trial]], runs: int = 30) -> dict:
    """One decision's cost (features + inference, one thread) with nothing else running in this
    process, on 8 s windows of the recordings."""
    from avatar.core.types import AudioChunk

    windows = [t.pcm[-128000:] for ts in trials_by_language.values() for t in ts if t.cut_s is None]
    times = [model.predict(AudioChunk(windows[i % len(windows)], RATE_HZ)).latency_ms for i in range(runs)]
    return {"n": runs, "median": statistics.median(times), "p95": float(np.percentile(times, 95))}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pauses-ms", default="300,400,500,600")
    parser.add_argument(
        "--no-tune", action="store_true", help="only the silence rule and the shipped defaults"
    )
    parser.add_argument("--out", type=Path, help="write every number as JSON here")
    parser.add_argument("--clips", help="comma-separated clip names (default: every eval speech clip)")
    parser.add_argument(
        "--score-cache",
        type=Path,
        default=Path("/tmp/avatar_turn_taking_scores_pipecat_1.14.0.json"),
        help="Smart Turn probabilities of earlier runs, by audio hash: a rerun costs no inference",
    )
    parser.add_argument(
        "--sweep-en",
        default="0.99,0.98,0.97,0.95,0.9",
        help="English end-at-once thresholds compared side by side ('' = skip)",
    )
    args = parser.parse_args()
    from machine_info import describe_machine

    from avatar.asr.whisper import WhisperASR
    from avatar.turns.smart_turn import SmartTurnModel
    from avatar.turns.vad_silero import SileroVAD

    if not SPEECH_DIR.is_dir():
        print(f"eval speech not found at {SPEECH_DIR}", file=sys.stderr)
        return 1
    started = time.perf_counter()
    pauses_ms = [float(p) for p in args.pauses_ms.split(",")]
    asr = WhisperASR()
    clips = [load_clip(name, asr) for name in (args.clips.split(",") if args.clips else SPEECH_CLIPS)]
    vad = SileroVAD(min_speech_ms=200.0, min_silence_ms=SPECULATE_AFTER_SILENCE_MS).load()
    trials_by_language: dict[str, list[Trial]] = {}
    for clip in clips:
        for trial in make_trials(clip, pauses_ms):
            trace_vad(trial, vad)
            trials_by_language.setdefault(clip.language, []).append(trial)
    model = SmartTurnModel().load()
    cache = ScoreCache(model, args.score_cache)
    rules = [Rule("silence 500 ms"), *shipped_rules()]
    tuned = None if args.no_tune else tune(trials_by_language, cache)
    cache.save()
    if tuned is not None:
        rules.append(tuned)
    report = {"machine": describe_machine(), "pauses_ms": pauses_ms, "rules": [r.name for r in rules]}
    report["clips"] = {c.name: {"boundaries": len(c.boundaries), "end_s": round(c.end_s, 3)} for c in clips}
    report["results"] = {}
    for half, parity in (("tune", 0), ("report", 1)):
        for lang, trials in trials_by_language.items():
            for rule in rules:
                result = summarise(split(trials, parity), rule, None if rule.thresholds is None else cache)
                report["results"].setdefault(half, {}).setdefault(lang, []).append(result)
    report["probabilities"] = probability_profile(trials_by_language, rules[1], cache)
    levels = [float(level) for level in args.sweep_en.split(",") if level.strip()]
    if levels and "en" in trials_by_language:
        report["sweep_en"] = sweep_english(trials_by_language, cache, levels)
    report["questions_en"] = question_probabilities(model)
    cache.save()
    latencies = [latency for _, latency in cache.scores.values()]
    report["inference_ms_during_runs"] = {"n": len(latencies), "median": statistics.median(latencies),
                                          "p95": float(np.percentile(latencies, 95))}  # fmt: skip
    report["inference_ms_alone"] = inference_alone(model, trials_by_language)
    report["wall_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Error-rate metrics: normalisation decides what counts as a mistake, so it is pinned here."""

from __future__ import annotations

import pytest

from tests.support.text_metrics import cer, chinese_numeral, corpus_error_rate, spell_numbers_chinese, wer


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (0, "零"), (6, "六"), (10, "十"), (12, "十二"), (20, "二十"), (105, "一百零五"),
        (110, "一百一十"), (1001, "一千零一"), (2026, "二千零二十六"), (10000, "一万"), (10086, "一万零八十六"),
    ],
)  # fmt: skip
def test_chinese_numerals(number, text):
    assert chinese_numeral(number) == text


def test_whisper_digits_count_as_the_spoken_numeral():
    assert spell_numbers_chinese("早上6点") == "早上六点"
    assert spell_numbers_chinese("电话13800138000") == "电话一三八零零一三八零零零"
    assert cer("他每天早上六点起床跑步。", "他每天早上6点起床跑步") == 0.0
    assert cer("他每天早上六点起床跑步。", "他每天早上7点起床跑步") == pytest.approx(1 / 11)


def test_english_digits_are_left_alone():
    assert wer("six o'clock", "6 o'clock") == 0.5


def test_pooled_rate_weighs_by_length():
    pairs = [("春天来了", "春天来了"), ("花", "草")]
    assert corpus_error_rate(pairs, "char") == pytest.approx(1 / 5)
    with pytest.raises(ValueError, match="unit"):
        corpus_error_rate(pairs, "syllable")

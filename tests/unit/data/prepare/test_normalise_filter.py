"""Normalisation steps and quality filters on crafted inputs."""

from __future__ import annotations

from lmforge.config.prepare import FilterConfig, NormaliseConfig
from lmforge.data.prepare import normalise
from lmforge.data.prepare.filters import reject_reason, repeated_line_share, repeated_ngram_share
from lmforge.data.prepare.normalise import (
    collapse_whitespace,
    fix_mojibake,
    normalise_text,
    strip_control,
    strip_html,
)


def test_mojibake_repaired_and_clean_text_untouched():
    assert fix_mojibake("cafÃ© crÃ¨me") == "café crème"
    assert fix_mojibake("Ã¼ber naÃ¯ve") == "über naïve"
    assert fix_mojibake("plain café, 日本語") == "plain café, 日本語"


def test_round_trip_fallback_without_ftfy():
    assert normalise._round_trip("itâ€™s cafÃ©") == "it’s café"
    assert normalise._round_trip("Ã© and 日本") == "Ã© and 日本"  # mixed with real CJK: left alone


def test_html_breaks_tags_and_entities():
    assert strip_html("Great!<br /><br />Buy &amp; enjoy <b>now</b>") == "Great!\n\nBuy & enjoy now"
    assert strip_html("a < b and c > d") == "a < b and c > d"


def test_control_and_zero_width_removed():
    assert strip_control("a\u200bb\x07c\r\nd\te") == "abc\nd\te"


def test_whitespace_collapsed_but_paragraphs_and_indentation_kept():
    assert collapse_whitespace("  a   b \t c \n\n\n\nd  ") == "a b c\n\nd"
    assert collapse_whitespace("def f():\n    return  1   ") == "def f():\n    return 1"


def test_code_survives_normalisation():
    cfg = NormaliseConfig()
    assert normalise_text("if x<y and y>z: List<String> a", cfg) == "if x<y and y>z: List<String> a"
    fenced = "Use this:\n```html\n<p>hi</p>\n    x  =  1\n```\nafter  <br>  text"
    assert normalise_text(fenced, cfg) == "Use this:\n```html\n<p>hi</p>\n    x  =  1\n```\nafter\ntext"


def test_unicode_forms_configurable():
    text = "ﬁne café"  # ligature + composed é
    assert normalise_text(text, NormaliseConfig(unicode="NFKC")) == "fine café"
    assert normalise_text(text, NormaliseConfig(unicode="NFC")) == "ﬁne café"
    off = NormaliseConfig(unicode="none", whitespace=False, html=False, control_chars=False, mojibake=False)
    assert normalise_text(" a<br />b ", off) == " a<br />b "


def test_filter_reasons():
    cfg = FilterConfig(min_length=3, max_length=20)
    assert reject_reason("   ", cfg) == "empty"
    assert reject_reason("two words", cfg) == "too_short"
    assert reject_reason(" ".join(["w"] * 21), cfg) == "too_long"
    assert reject_reason("buy it now\nbuy it now\nbuy it now\nok", cfg) == "repeated_lines"
    junk = "click here to win " * 13
    assert reject_reason(junk, FilterConfig()) == "repeated_ngrams"
    assert reject_reason("I love love love love love love this chocolate!", FilterConfig()) is None  # short: kept
    assert reject_reason("The coffee arrived quickly and tasted fresh, strong and smooth.", cfg) is None


def test_filter_counts_tokens_with_a_tokenizer():
    class CharTokenizer:
        def encode(self, text, add_special_tokens=False):
            return list(text)

    cfg = FilterConfig(max_length=10)
    assert reject_reason("one two three", cfg) is None  # 3 words
    assert reject_reason("one two three", cfg, CharTokenizer()) == "too_long"  # 13 characters


def test_repetition_shares():
    assert repeated_line_share("a b c\nb c d\nc d e") == 0.0
    assert repeated_line_share("a b c\na b c\na b c\na b c") == 0.75
    assert repeated_line_share("if x:\n    y()\n}\n}\n}\n}") == 0.0  # short lines do not count
    assert repeated_ngram_share("x y x y x y".split(), 2) == 1 - 2 / 5

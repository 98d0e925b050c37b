"""Normalization flags: each one alone, their order, and every accepted config form."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from ocrft.config import NormalizationConfig
from ocrft.normalize import normalization_dict, normalize, normalizer

OFF = {"nfkc": False, "collapse_whitespace": False, "lowercase": False, "remove_punctuation": False,
       "fullwidth_to_halfwidth": False}


def only(**flags: bool) -> dict:
    return {**OFF, **flags}


def test_nfkc_turns_fullwidth_digits_and_letters_into_ascii():
    # U+FF11 U+FF12 U+FF13 = full-width "123", U+FF21 = full-width "A", U+FB01 = the "fi" ligature.
    assert normalize("\uff11\uff12\uff13\uff21 \ufb01le", only(nfkc=True)) == "123A file"
    assert normalize("\uff11\uff12\uff13", OFF) == "\uff11\uff12\uff13"


def test_nfkc_composes_decomposed_accents():
    # "e" + COMBINING ACUTE ACCENT (2 code points) becomes the single code point "é".
    assert normalize("e\u0301", only(nfkc=True)) == "\u00e9"


def test_fullwidth_to_halfwidth_maps_only_fullwidth_forms():
    text = "\uff21\uff42\uff43\uff01\u3000\uff10 \ufb01"  # Ａｂｃ！<ideographic space>０ ﬁ
    # The ligature is not a full-width form, so it stays (NFKC would have split it).
    assert normalize(text, only(fullwidth_to_halfwidth=True)) == "Abc! 0 \ufb01"


def test_collapse_whitespace_strips_and_joins_all_unicode_spaces():
    assert normalize("  a \t\n b\u3000\u00a0c  ", only(collapse_whitespace=True)) == "a b c"
    assert normalize("  a  b ", OFF) == "  a  b "


def test_lowercase_keeps_length():
    assert normalize("ÄBC Київ", only(lowercase=True)) == "äbc київ"
    assert normalize("STRASSE ß", only(lowercase=True)) == "strasse ß"  # no casefold ß -> ss


def test_remove_punctuation_uses_unicode_p_categories():
    # ASCII, CJK (。，「」), Cyrillic-text quotes («») and dashes are P*; $ and + are symbols (S*).
    text = "Hello, world! 你好。「引号」，«Київ» — $5+3"
    assert normalize(text, only(remove_punctuation=True)) == "Hello world 你好引号Київ  $5+3"
    collapsed = normalize(text, only(remove_punctuation=True, collapse_whitespace=True))
    assert collapsed == "Hello world 你好引号Київ $5+3"


def test_all_flags_apply_in_documented_order():
    text = "  \uff28\uff25\uff2c\uff2c\uff2f ,  World!  "
    flags = {k: True for k in OFF}
    # full-width -> ASCII, lowercase, punctuation gone, whitespace collapsed last.
    assert normalize(text, flags) == "hello world"


def test_accepts_dataclass_dictconfig_dict_and_none():
    dc = NormalizationConfig(lowercase=True)
    dcfg = OmegaConf.structured(dc)
    expected = {"nfkc": True, "collapse_whitespace": True, "lowercase": True, "remove_punctuation": False,
                "fullwidth_to_halfwidth": False}
    assert normalization_dict(dc) == expected
    assert normalization_dict(dcfg) == expected
    assert normalization_dict({"lowercase": True}) == expected  # missing keys take the defaults
    assert normalization_dict(None) == OFF
    for cfg in (dc, dcfg, {"lowercase": True}):
        assert normalize(" A  B ", cfg) == "a b"
    assert normalize(" A  B ", None) == " A  B "


def test_unknown_flag_is_rejected_with_valid_names():
    with pytest.raises(ValueError, match="lowercse.*valid flags"):
        normalization_dict({"lowercse": True})
    with pytest.raises(TypeError):
        normalization_dict(42)


def test_normalizer_matches_normalize():
    f = normalizer({"lowercase": True, "remove_punctuation": True})
    assert f("A, B!") == normalize("A, B!", {"lowercase": True, "remove_punctuation": True}) == "a b"
    assert normalizer(None)("  X ") == "  X "

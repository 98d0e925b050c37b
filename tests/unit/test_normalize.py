"""Normalization flags: each one alone, their order, and every accepted config form."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from ocrft.config import NormalizationConfig
from ocrft.evaluation.normalize import normalization_dict, normalize, normalizer, stored_normalization

OFF = {"nfc": False, "nfkc": False, "collapse_whitespace": False, "lowercase": False, "remove_punctuation": False,
       "fullwidth_to_halfwidth": False, "markdown": False}


def only(**flags: bool) -> dict:
    return {**OFF, **flags}


def test_nfkc_turns_fullwidth_digits_and_letters_into_ascii():
    # U+FF11 U+FF12 U+FF13 = full-width "123", U+FF21 = full-width "A", U+FB01 = the "fi" ligature.
    assert normalize("\uff11\uff12\uff13\uff21 \ufb01le", only(nfkc=True)) == "123A file"
    assert normalize("\uff11\uff12\uff13", OFF) == "\uff11\uff12\uff13"


def test_nfkc_composes_decomposed_accents():
    # "e" + COMBINING ACUTE ACCENT (2 code points) becomes the single code point "é".
    assert normalize("e\u0301", only(nfkc=True)) == "\u00e9"


def test_nfc_composes_but_keeps_long_s_ligatures_and_superscripts():
    # NFC: canonical composition only. ſ (U+017F), ﬁ (U+FB01), ² and full-width digits are
    # distinct characters in historical and typeset ground truth, and stay.
    text = "e\u0301 Berlini\u017fche \ufb01n x\u00b2 \uff11"
    assert normalize(text, only(nfc=True)) == "\u00e9 Berlini\u017fche \ufb01n x\u00b2 \uff11"
    assert normalize(text, only(nfkc=True)) == "\u00e9 Berlinische fin x2 1"
    # nfkc replaces nfc (it composes too): both on is NFKC.
    assert normalize(text, only(nfc=True, nfkc=True)) == normalize(text, only(nfkc=True))
    # a + COMBINING LATIN SMALL LETTER E has no precomposed form: NFC keeps both code points.
    assert normalize("a\u0364", only(nfc=True)) == "a\u0364"


def test_default_config_is_nfc_and_whitespace_only():
    assert normalize("  Berlini\u017fche   \ufb01nden e\u0301 ", NormalizationConfig()) == "Berlini\u017fche \ufb01nden \u00e9"


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
    expected = {"nfc": True, "nfkc": False, "collapse_whitespace": True, "lowercase": True, "remove_punctuation": False,
                "fullwidth_to_halfwidth": False, "markdown": False}
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


def test_stored_dict_missing_flags_were_not_applied():
    # A results file from before `nfc` existed, scored with the old default nfkc=true:
    # its diffs are redrawn with NFKC, as it was scored; no flag switches on by itself.
    old = {"nfkc": True, "collapse_whitespace": True, "lowercase": False, "remove_punctuation": False,
           "fullwidth_to_halfwidth": False}
    assert stored_normalization(old) == {**old, "nfc": False, "markdown": False}
    assert normalize("\u017f", stored_normalization(old)) == "s"
    # ... and one that opted out of NFKC was scored without composition: it stays so.
    raw = stored_normalization({**old, "nfkc": False})
    assert normalize("e\u0301", raw) == "e\u0301"
    assert normalization_dict({**old, "nfkc": False})["nfc"] is True  # a *config* dict takes the new default
    # Seed files (no dict or an empty one) were scored on raw text; a full dict reads as written.
    assert stored_normalization(None) == stored_normalization({}) == OFF
    assert stored_normalization(normalization_dict(NormalizationConfig())) == normalization_dict(NormalizationConfig())
    with pytest.raises(ValueError, match="valid flags"):
        stored_normalization({"nfd": True})


def test_normalizer_matches_normalize():
    f = normalizer({"lowercase": True, "remove_punctuation": True})
    assert f("A, B!") == normalize("A, B!", {"lowercase": True, "remove_punctuation": True}) == "a b"
    assert normalizer(None)("  X ") == "  X "


def test_markdown_strips_emphasis_headings_lists_and_unifies_dashes_and_quotes():
    md = "# Title\n\n## Sub *one*\n- **bold** item\n* _it_ item\n1. first\n2) second\nx<br>y — “q” ‘s’ 5 µm"
    assert normalize(md, only(markdown=True)) == "Title\n\nSub one\nbold item\nit item\nfirst\nsecond\nx y - \"q\" 's' 5 μm"
    # what olmOCR-Bench folds, and no more: a "#" inside a line, a dash not followed by a space
    assert normalize("C# is -5 and 3 * 4", only(markdown=True)) == "C# is -5 and 3 * 4"
    assert normalize("snake_case_name", only(markdown=True)) == "snakecasename"  # the benchmark's rule too


def test_markdown_model_scores_on_its_text():
    from ocrft.evaluation.metrics import score_sample

    md = "## Invoice\n\n- **Total**: 12–14 “EUR”"
    plain = "Invoice\nTotal: 12-14 \"EUR\""
    assert score_sample(md, plain, {"markdown": True})["cer"] == 0.0
    assert score_sample(md, plain)["cer"] > 0.2

"""ocrft.evaluation.metrics against independent references.

- CER/WER: the known values of jiwer's own test suite (tests/test_cer.py, tests/test_wer.py,
  which cite "From WER and RIL to MER and WIL"), and jiwer itself run as an oracle on seeded
  random corpora.
- BLEU/TER: the known values of sacrebleu's test suite (test/test_bleu.py, test/test_ter.py),
  BLEU values worked out by hand, and sacrebleu's API as an oracle: its defaults (what
  ``sacrebleu`` and HF evaluate print) and each option.
- Conventions: ſ/s and ﬁ/fi are errors by default, NFKC folds them; grapheme CER counts
  "aͤ" as one character (dinglehopper's convention).
- char F1, exact match, ned, JSON fields, degenerate outputs: small cases computed by hand.
"""

from __future__ import annotations

import math
import random

import jiwer
import pytest
import sacrebleu
from sacrebleu.metrics import TER

from ocrft.config import EvalConfig, NormalizationConfig
from ocrft.evaluation.metrics import MetricSettings, flatten_json, is_degenerate, longest_repeat, metric_tags, score, score_sample
from ocrft.config import ConfigError

# ---------------------------------------------------------------- CER / WER vs jiwer

# (reference, hypothesis, CER) from jiwer's tests/test_cer.py
JIWER_CER_CASES = [
    ("This is a test", "This is a test", 0 / 14),
    ("This is a test", "", 14 / 14),
    ("This is a test", "This test", 5 / 14),
    ("X", "X", 0),
    ("X", "X X Y Y", 6),
    ("X Y X", "X Z", 3 / 5),
    ("X", "Y", 1),
    ("X", "Y Z", 3),
]
# (reference, hypothesis, WER) from jiwer's tests/test_wer.py
JIWER_WER_CASES = [
    ("This is a test", "This is a test", 0),
    ("This is a test", "", 1),
    ("This is a test", "This test", 0.5),
]


@pytest.mark.parametrize("ref, hyp, expected", JIWER_CER_CASES)
def test_cer_matches_jiwer_known_values(ref, hyp, expected):
    m = score([hyp], [ref])
    assert m["cer"] == pytest.approx(expected, abs=1e-12)
    assert m["mean_cer"] == pytest.approx(expected, abs=1e-12)
    assert score_sample(hyp, ref)["cer"] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("ref, hyp, expected", JIWER_WER_CASES)
def test_wer_matches_jiwer_known_values(ref, hyp, expected):
    assert score([hyp], [ref])["wer"] == pytest.approx(expected, abs=1e-12)
    assert score_sample(hyp, ref)["wer"] == pytest.approx(expected, abs=1e-12)


def test_corpus_cer_matches_jiwer_known_corpus_values():
    # jiwer test_permutations_invariance and test_return_dict: corpus CER is total edits /
    # total reference characters, not the mean of sample CERs.
    assert score(["i am", "i good"], ["i", "am i good"])["cer"] == pytest.approx(0.6)
    assert score(["i good", "i am"], ["am i good", "i"])["cer"] == pytest.approx(0.6)
    m = score(["i am", "y good"], ["i", "am i good"])
    assert m["cer"] == pytest.approx(0.7)
    # Sample CERs: "i"->"i am" = 3/1, "am i good"->"y good" = 4/9, hence the mean.
    assert m["mean_cer"] == pytest.approx((3 / 1 + 4 / 9) / 2)


def _random_corpus(rng: random.Random, n: int) -> tuple[list[str], list[str]]:
    words = ["the", "cat", "sat", "on", "mat", "Київ", "лист", "1923", "p.", "№5", "naïve", "x"]
    refs, hyps = [], []
    for _ in range(n):
        ref = [rng.choice(words) for _ in range(rng.randint(1, 9))]
        hyp = list(ref)
        for _ in range(rng.randint(0, 3)):  # word-level edits
            op = rng.choice("sid")
            if op == "s" and hyp:
                hyp[rng.randrange(len(hyp))] = rng.choice(words)
            elif op == "i":
                hyp.insert(rng.randint(0, len(hyp)), rng.choice(words))
            elif hyp:
                del hyp[rng.randrange(len(hyp))]
        hyp_s = " ".join(hyp)
        if hyp_s and rng.random() < 0.3:  # character-level typo
            i = rng.randrange(len(hyp_s))
            hyp_s = hyp_s[:i] + rng.choice("aeo0") + hyp_s[i + 1 :]
        refs.append(" ".join(ref))
        hyps.append(hyp_s.strip())
    return hyps, refs


@pytest.mark.parametrize("seed", range(5))
def test_corpus_and_mean_cer_wer_agree_with_jiwer_on_random_corpora(seed):
    hyps, refs = _random_corpus(random.Random(seed), 40)
    m = score(hyps, refs)
    assert m["cer"] == pytest.approx(jiwer.cer(refs, hyps), abs=1e-12)
    assert m["wer"] == pytest.approx(jiwer.wer(refs, hyps), abs=1e-12)
    assert m["mean_cer"] == pytest.approx(sum(jiwer.cer(r, h) for r, h in zip(refs, hyps)) / len(refs), abs=1e-12)
    assert m["mean_wer"] == pytest.approx(sum(jiwer.wer(r, h) for r, h in zip(refs, hyps)) / len(refs), abs=1e-12)


def test_empty_reference_rule_and_corpus_insertions_agree_with_jiwer():
    # Sample rule: empty reference -> 0.0 if the prediction is empty too, else 1.0.
    assert score_sample("", "")["cer"] == 0.0
    assert score_sample("ab", "")["cer"] == 1.0
    assert score_sample("ab", "")["wer"] == 1.0
    # Corpus: the two insertions count against the 3 reference characters (jiwer agrees).
    m = score(["abc", "ab"], ["abc", ""])
    assert m["cer"] == pytest.approx(2 / 3) == pytest.approx(jiwer.cer(["abc", ""], ["abc", "ab"]))
    assert m["mean_cer"] == pytest.approx(0.5)
    assert score([""], [""])["cer"] == 0.0 and score(["a"], [""])["cer"] == 1.0


def test_normalization_is_applied_before_scoring():
    # Full-width digits equal ASCII after NFKC (opt-in); the default config only collapses
    # whitespace (and composes NFC), so the three full-width digits stay three errors.
    assert score(["\uff11\uff12\uff13  4"], ["123 4"], NormalizationConfig(nfkc=True))["cer"] == 0.0
    assert score(["\uff11\uff12\uff13  4"], ["123 4"], NormalizationConfig())["cer"] == pytest.approx(3 / 5)
    assert score(["\uff11\uff12\uff13  4"], ["123 4"])["cer"] == pytest.approx(4 / 5)
    lower = {"lowercase": True, "remove_punctuation": True}
    assert score(["Hello, World!"], ["hello world"], lower)["exact_match"] == 1.0
    assert score(["Hello, World!"], ["hello world"])["exact_match"] == 0.0


# ---------------------------------------------------------------- char F1, exact, ned


def test_char_precision_recall_f1_hand_computed():
    s = score_sample("abcc", "abcd")  # overlap {a, b, c} = 3 of 4 on each side
    assert (s["char_precision"], s["char_recall"], s["f1"]) == pytest.approx((0.75, 0.75, 0.75))
    s = score_sample("xy", "x")  # overlap 1: P = 1/2, R = 1/1
    assert (s["char_precision"], s["char_recall"], s["f1"]) == pytest.approx((0.5, 1.0, 2 / 3))
    m = score(["abcc", "xy"], ["abcd", "x"])
    # Micro over all characters: overlap 4, 6 predicted, 5 reference characters.
    p, r = 4 / 6, 4 / 5
    assert (m["char_precision"], m["char_recall"]) == pytest.approx((p, r))
    assert m["char_f1"] == pytest.approx(2 * p * r / (p + r))
    assert m["mean_char_f1"] == pytest.approx((0.75 + 2 / 3) / 2)


def test_char_f1_is_order_free_and_handles_empty_sides():
    assert score_sample("cba", "abc")["f1"] == 1.0  # a multiset: order does not matter
    assert score_sample("cba", "abc")["cer"] == pytest.approx(2 / 3)
    assert score_sample("", "")["f1"] == 1.0
    assert score_sample("", "abc")["f1"] == 0.0
    assert score_sample("abc", "")["f1"] == 0.0


def test_exact_match_and_ned_hand_computed():
    m = score(["abc", "ab", "same", ""], ["abd", "abcd", "same", ""])
    assert m["exact_match"] == pytest.approx(2 / 4)
    # ned = edits / max(len): 1/3, 2/4, 0, 0 (two empty strings)
    assert m["ned"] == pytest.approx((1 / 3 + 2 / 4) / 4)
    assert score_sample("xyz", "a")["ned"] == 1.0  # 3 edits / max(3, 1): bounded by 1 unlike CER
    assert score_sample("xyz", "a")["cer"] == 3.0


# ---------------------------------------------------------------- BLEU / TER vs sacrebleu

_HYPS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
_REFS = ["The dog bit the man.", "It was not unexpected.", "The man bit him first."]


def test_bleu_known_values():
    # sacrebleu test_bleu: identical -> 100; empty hypotheses are scored, not dropped -> 0.
    assert score(["this is a test"], ["this is a test"])["bleu"] == pytest.approx(100.0)
    assert score(["", "", ""], _REFS)["bleu"] == 0.0
    # By hand: 1-4-gram precisions 3/4, 2/3, 1/2 and 0/1, the zero smoothed by sacrebleu's
    # default "exp" method to 1/2; brevity penalty 1.
    expected = 100 * (3 / 4 * 2 / 3 * 1 / 2 * 1 / 2) ** 0.25
    assert score(["this is a fest"], ["this is a test"])["bleu"] == pytest.approx(expected, abs=1e-9)
    # The same by characters: "abcd" vs "abce" has exactly those n-gram precisions.
    assert score(["abcd"], ["abce"], settings=MetricSettings(bleu_tokenize="char"))["bleu"] == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("tokenize", ["13a", "zh", "char", "none"])
def test_bleu_matches_sacrebleu_for_each_tokenizer(tokenize):
    hyps = _HYPS + ["我们今天去北京。", "发票金额：100元"]
    refs = _REFS + ["我们明天去北京。", "发票金额：100元"]
    expected = sacrebleu.corpus_bleu(hyps, [refs], tokenize=tokenize).score
    assert score(hyps, refs, settings=MetricSettings(bleu_tokenize=tokenize))["bleu"] == pytest.approx(expected, abs=1e-9)
    assert 0 <= expected <= 100


# (hypotheses, references, TER/100) from sacrebleu's test/test_ter.py (plain TER: no tercom
# normalization, which is sacrebleu's and ocrft's default).
SACREBLEU_TER_CASES = [
    (["aaaa bbbb cccc dddd"], ["aaaa bbbb cccc dddd"], 0),
    (["dddd eeee ffff"], ["aaaa bbbb cccc"], 1),
    ([""], ["a"], 1),
    (["d e f g h a b c"], ["a b c d e f g h"], 1 / 8),  # a single shift
]


@pytest.mark.parametrize("hyps, refs, expected", SACREBLEU_TER_CASES)
def test_ter_known_values(hyps, refs, expected):
    assert abs(score(hyps, refs)["ter"] - 100 * expected) < 1e-3


def test_ter_defaults_and_each_option_by_hand():
    # sacrebleu's default TER ignores case: "The" vs "the" is no edit; case_sensitive makes it one of two.
    assert score(["The cat"], ["the cat"])["ter"] == 0.0
    assert score(["The cat"], ["the cat"], settings=MetricSettings(ter_case_sensitive=True))["ter"] == pytest.approx(50.0)
    # Default tokens are whitespace words: "man!" vs "man." is 1 edit of 5; tercom
    # normalization splits punctuation off ("man ."): 1 edit of 6; no_punct drops it: 0.
    pair = (["The dog bit the man!"], ["The dog bit the man."])
    assert score(*pair)["ter"] == pytest.approx(100 / 5)
    assert score(*pair, settings=MetricSettings(ter_normalized=True))["ter"] == pytest.approx(100 / 6)
    assert score(*pair, settings=MetricSettings(ter_no_punct=True))["ter"] == 0.0
    # asian_support (with normalization) makes every CJK character a token: 2 of 4 substituted.
    cjk = MetricSettings(ter_normalized=True, ter_asian_support=True)
    assert score(["我爱北京"], ["我爱上海"])["ter"] == pytest.approx(100.0)  # one word of one
    assert score(["我爱北京"], ["我爱上海"], settings=cjk)["ter"] == pytest.approx(50.0)


# Six lines as Tesseract 5 (deu/frk) reads a 1790s print, against their ground truth: case
# slips, punctuation lost or misread, a dropped word. ocrft used to print TER 60.0-style
# numbers on such lines (case-sensitive, tercom-normalized) where sacrebleu says otherwise.
TESSERACT_LINES = [
    ("Berlinische Monatsschrift.", "Berliniſche Monatsſchrift."),
    ("ZWEITER BAND, Julius bis December", "Zweiter Band. Julius bis December."),
    ("Was ist Aufklärung ?", "Was iſt Aufklärung?"),
    ("Aufklärung ist der Ausgang des Menschen aus", "Aufklärung iſt der Ausgang des Menſchen aus"),
    ("ſeiner ſelbſt verschuldeten unmündigkeit", "ſeiner ſelbſt verſchuldeten Unmündigkeit."),
    ("", "Sapere aude!"),
]


def test_bleu_and_ter_equal_sacrebleu_defaults_on_tesseract_lines():
    hyps, refs = [h for h, _ in TESSERACT_LINES], [r for _, r in TESSERACT_LINES]
    m = score(hyps, refs, NormalizationConfig())
    assert m["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score, abs=1e-9)
    assert m["ter"] == pytest.approx(sacrebleu.corpus_ter(hyps, [refs]).score, abs=1e-9)
    # ... and not what the old convention gave on the same lines.
    old = TER(case_sensitive=True, normalized=True).corpus_score(hyps, [refs]).score
    assert abs(m["ter"] - old) > 1.0


@pytest.mark.parametrize(
    "option, kwargs",
    [
        ({"ter_case_sensitive": True}, {"case_sensitive": True}),
        ({"ter_normalized": True}, {"normalized": True}),
        ({"ter_no_punct": True}, {"no_punct": True}),
        ({"ter_normalized": True, "ter_asian_support": True}, {"normalized": True, "asian_support": True}),
    ],
)
def test_ter_option_equals_sacrebleu_with_that_option(option, kwargs):
    hyps = [h for h, _ in TESSERACT_LINES] + ["我们今天去北京。"]
    refs = [r for _, r in TESSERACT_LINES] + ["我们明天去北京。"]
    m = score(hyps, refs, settings=MetricSettings(**option))
    assert m["ter"] == pytest.approx(TER(**kwargs).corpus_score(hyps, [refs]).score, abs=1e-9)
    assert m["ter"] != pytest.approx(sacrebleu.corpus_ter(hyps, [refs]).score)  # the option matters here


def test_bleu_lowercase_option_equals_sacrebleu():
    hyps, refs = [h for h, _ in TESSERACT_LINES], [r for _, r in TESSERACT_LINES]
    m = score(hyps, refs, settings=MetricSettings(bleu_lowercase=True))
    assert m["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], lowercase=True).score, abs=1e-9)
    assert m["bleu"] > score(hyps, refs)["bleu"]  # "ZWEITER BAND" now matches


def test_signatures_are_sacrebleus_and_follow_the_options():
    hyps, refs = [h for h, _ in TESSERACT_LINES], [r for _, r in TESSERACT_LINES]
    bleu, ter = sacrebleu.BLEU(), sacrebleu.TER()
    bleu.corpus_score(hyps, [refs])
    ter.corpus_score(hyps, [refs])
    assert MetricSettings().signatures() == {"bleu": str(bleu.get_signature()), "ter": str(ter.get_signature())}
    assert "case:lc" in MetricSettings().signatures()["ter"]
    assert "case:mixed" in MetricSettings(ter_case_sensitive=True).signatures()["ter"]
    assert "tok:char" in MetricSettings(bleu_tokenize="char").signatures()["bleu"]
    tags = metric_tags(EvalConfig(cer_unit="grapheme", ter_no_punct=True))
    assert tags["eval/cer_unit"] == "grapheme" and "punct:no" in tags["eval/ter_signature"]
    assert tags["eval/bleu_signature"] == MetricSettings().signatures()["bleu"]


def test_settings_come_from_eval_config_by_name_and_are_validated():
    assert MetricSettings.from_eval(EvalConfig()) == MetricSettings()  # same defaults as the config
    assert MetricSettings.from_eval(EvalConfig(bleu_tokenize="zh", ter_asian_support=True)).ter_asian_support
    with pytest.raises(ConfigError, match="eval.bleu_tokenize='intl'.*13a"):
        MetricSettings(bleu_tokenize="intl")
    with pytest.raises(ConfigError, match="eval.cer_unit='glyph'.*grapheme"):
        MetricSettings(cer_unit="glyph")


# ---------------------------------------------------------------- conventions: ſ, ﬁ, graphemes


def test_default_normalization_scores_long_s_and_ligatures_as_errors():
    refs = ["Berliniſche Monatsſchrift.", "\ufb01nden"]  # ſ and the ﬁ ligature, as OCR-D GT keeps them
    hyps = ["Berlinische Monatsschrift.", "finden"]
    m = score(hyps, refs, NormalizationConfig())
    assert m["cer"] == pytest.approx((2 + 2) / (26 + 5))  # 2 ſ->s; ﬁ->"fi" = 1 substitution + 1 insertion
    assert score(hyps, refs, NormalizationConfig(nfkc=True))["cer"] == 0.0  # NFKC folds them: opt-in
    # NFC (the default) still equates a precomposed and a decomposed "ä".
    assert score(["Aufkla\u0308rung"], ["Aufkl\u00e4rung"], NormalizationConfig())["cer"] == 0.0


def test_grapheme_cer_counts_a_combining_mark_with_its_base():
    grapheme = MetricSettings(cer_unit="grapheme")
    # "aͤ" (a + U+0364 COMBINING LATIN SMALL LETTER E) read as "a": one edit over one grapheme.
    assert score_sample("a", "a\u0364", settings=grapheme)["cer"] == 1.0
    assert score_sample("a", "a\u0364")["cer"] == 0.5  # code points: one deletion of two
    s = score_sample("Schu\u0364ler", "Schuler", settings=grapheme)
    assert s["cer"] == pytest.approx(1 / 7) and s["ned"] == pytest.approx(1 / 7)
    # char F1 counts graphemes as a multiset too: "aͤ" and "a" share nothing.
    assert score_sample("a", "a\u0364", settings=grapheme)["f1"] == 0.0
    assert score_sample("a", "a\u0364")["char_precision"] == 1.0
    m = score(["a", "Schuler", "Devanagari \u0928\u092e"], ["a\u0364", "Schu\u0364ler", "Devanagari \u0928\u092e\u0938\u094d"],
              settings=grapheme)
    # graphemes: 1 of 1, 1 of 7, and "नमस्" is 3 graphemes (स + virama is one): 1 missing of
    # 11 + 3 -> (1 + 1 + 1) / (1 + 7 + 14)
    assert m["cer"] == pytest.approx(3 / 22)
    assert m["wer"] == score(["a", "Schuler", "Devanagari \u0928\u092e"],
                             ["a\u0364", "Schu\u0364ler", "Devanagari \u0928\u092e\u0938\u094d"])["wer"]  # WER: unchanged


def test_codepoint_cer_equals_jiwer_on_historical_lines():
    hyps, refs = [h for h, _ in TESSERACT_LINES], [r for _, r in TESSERACT_LINES]
    hyps += ["Schuler", "\ufb01nden", "Київ 1923"]
    refs += ["Schu\u0364ler", "finden", "Київ, 1923"]
    m = score(hyps, refs)  # raw text: jiwer does not normalize either
    assert m["cer"] == pytest.approx(jiwer.cer(refs, hyps), abs=1e-12)
    assert m["mean_cer"] == pytest.approx(sum(jiwer.cer(r, h) for r, h in zip(refs, hyps)) / len(refs), abs=1e-12)
    assert m["wer"] == pytest.approx(jiwer.wer(refs, hyps), abs=1e-12)
    # Graphemes give a different, higher CER here (fewer characters, same edits).
    assert score(hyps, refs, settings=MetricSettings(cer_unit="grapheme"))["cer"] > m["cer"]


# ---------------------------------------------------------------- degenerate outputs


@pytest.mark.parametrize(
    "pred, ref, expected",
    [
        ("", "abc", True),  # empty output
        ("   ", "abc", True),
        ("", "", False),  # nothing to read, nothing read
        ("abc" * 8, "abc", True),  # 24 chars, one unit 8 times
        ("The total is 5 " + "and so on " * 6, "The total is 5", True),  # 60 of 75 chars loop
        ("aaaaaaaaaa", "a", False),  # only 10 chars: too short to call
        ("hello world hello world hello world", "hello world", False),  # 3 copies < 4
        ("Normal line of text without repeats -----", "Normal line", False),  # run covers 5/41
        ("Contents " + "." * 24 + " 5", "Contents " + "." * 24 + " 5", False),  # run is in the reference
        ("Contents " + "." * 24 + " 5", "Contents 5", True),
        ("It was a dark and stormy night; " * 5, "It was a dark and stormy night;", True),  # 32-char unit
    ],
)
def test_is_degenerate(pred, ref, expected):
    assert is_degenerate(pred, ref) is expected


def test_longest_repeat_finds_the_longest_run():
    assert longest_repeat("xyxyxyxy--aaaaaaaaa") == "aaaaaaaaa"
    assert longest_repeat("abcd") == ""
    assert longest_repeat("ab" * 10) == "ab" * 10


def test_degenerate_rate_counts_samples():
    m = score(["", "abc" * 10, "fine text"], ["ref", "abc", "fine text"])
    assert m["degenerate_rate"] == pytest.approx(2 / 3)


# ---------------------------------------------------------------- JSON targets

_REF_JSON = '{"items": [{"name": "Tea", "price": 3}], "total": "3.00"}'


def test_flatten_json_paths():
    assert sorted(flatten_json({"items": [{"name": "Tea", "price": 3}], "total": "3.00", "tags": []})) == [
        ("items[0].name", "Tea"), ("items[0].price", 3), ("tags", []), ("total", "3.00")
    ]
    assert flatten_json([1, {"a": None}]) == [("[0]", 1), ("[1].a", None)]


def test_json_field_scores_hand_computed():
    pred = '{"items": [{"name": "tea", "price": 3}], "total": "3.00", "extra": 1}'
    s = score_sample(pred, _REF_JSON, json_target=True)
    # 4 predicted fields, 3 reference fields; "tea" != "Tea" raw, so 2 match.
    assert (s["json_field_precision"], s["json_field_recall"]) == pytest.approx((2 / 4, 2 / 3))
    s = score_sample(pred, _REF_JSON, {"lowercase": True}, json_target=True)
    assert (s["json_field_precision"], s["json_field_recall"]) == pytest.approx((3 / 4, 3 / 3))
    # Leaves compare as strings: the number 3 and the string "3" read the same, 3.0 does not.
    s = score_sample('{"items": [{"name": "Tea", "price": "3"}], "total": "3.00"}', _REF_JSON, json_target=True)
    assert s["json_field_f1"] == 1.0
    s = score_sample('{"items": [{"name": "Tea", "price": 3.0}], "total": "3.00"}', _REF_JSON, json_target=True)
    assert s["json_field_f1"] == pytest.approx(2 / 3)


def test_json_corpus_metrics_and_validity():
    preds = [
        "```json\n" + _REF_JSON + "\n```",  # fenced, as chat models write it: valid, 3/3
        "Sorry, I cannot read this.",  # invalid: no fields, 3 missed
        '{"total": "3.00"',  # truncated: invalid
    ]
    m = score(preds, [_REF_JSON] * 3)
    assert m["json_valid_rate"] == pytest.approx(1 / 3)
    assert m["json_field_precision"] == pytest.approx(3 / 3)
    assert m["json_field_recall"] == pytest.approx(3 / 9)
    assert m["json_field_f1"] == pytest.approx(2 * 1 * (1 / 3) / (1 + 1 / 3))


def test_json_auto_detection_and_override():
    assert "json_valid_rate" in score([_REF_JSON], [_REF_JSON])
    assert "json_valid_rate" not in score(["a", _REF_JSON], ["plain text", _REF_JSON])
    assert "json_valid_rate" not in score([_REF_JSON], [_REF_JSON], json_target=False)
    assert score(["x"], ["plain"], json_target=True)["json_valid_rate"] == 0.0


def test_json_is_parsed_from_raw_text_so_punctuation_removal_cannot_break_it():
    m = score([_REF_JSON], [_REF_JSON], {"remove_punctuation": True})
    assert m["json_valid_rate"] == 1.0 and m["json_field_f1"] == 1.0


# ---------------------------------------------------------------- bad input


def test_mismatched_lengths_raise_value_error():
    with pytest.raises(ValueError, match="2 predictions but 3 references"):
        score(["a", "b"], ["a", "b", "c"])


def test_non_string_items_name_their_index():
    with pytest.raises(TypeError, match=r"predictions\[1\] is NoneType"):
        score(["a", None], ["a", "b"])
    with pytest.raises(TypeError, match=r"references\[0\] is int"):
        score(["a"], [5])
    with pytest.raises(TypeError, match="list of strings, not str"):
        score("abc", "abc")
    with pytest.raises(TypeError, match="prediction is NoneType"):
        score_sample(None, "a")


def test_no_samples_is_an_error():
    with pytest.raises(ValueError, match="no samples"):
        score([], [])


# ---------------------------------------------------------------- scale


@pytest.mark.slow
def test_scores_ten_thousand_pairs_consistently():
    """A sanity check of scale (no timing asserted): 10k pairs go through one pass and the
    corpus numbers still agree with jiwer."""
    hyps, refs = _random_corpus(random.Random(123), 10_000)
    m = score(hyps, refs)
    assert m["num_samples"] == 10_000
    assert m["cer"] == pytest.approx(jiwer.cer(refs, hyps), abs=1e-12)
    assert all(math.isfinite(v) for v in m.values())


def test_every_validation_metric_eval_metric_accepts_is_one_the_scorer_returns():
    """eval.metric is checked at start against VALIDATION_METRICS; each name must be a key the
    validation's scores have (plain text, JSON targets, and looped_rate from count_looped)."""
    from ocrft.config import VALIDATION_METRICS
    from ocrft.evaluation.metrics import count_looped, score_detailed

    text, samples = score_detailed(["a line", "other"], ["a lime", "other"])
    count_looped(text, samples, [False, True])
    json_metrics, _ = score_detailed(['{"total": "12"}'], ['{"total": "13"}'])
    assert set(VALIDATION_METRICS) <= set(text) | set(json_metrics)

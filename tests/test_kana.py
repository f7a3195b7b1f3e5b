"""The Japanese reading frontend against hand-written pronunciations (tests/data/kana_cases.tsv),
plus one test per rule. Runs the real pyopenjtalk-plus dictionary and the real e2k model."""

from __future__ import annotations

import io
import statistics
import threading
import time
from pathlib import Path

import pytest

from nodes.synthesize.kana.reading import KanaFrontend
from stream_tts.cli import COMMANDS
from stream_tts.commands.kana import cli_kana

CASES_PATH = Path(__file__).parent / "data" / "kana_cases.tsv"
MAX_CER = 0.02

# Katakana vowels, for the long-vowel canonical form below.
_ROWS = {
    "ア": "アカガサザタダナハバパマヤャラワァ", "イ": "イキギシジチヂニヒビピミリィ",
    "ウ": "ウクグスズツヅヌフブプムユュルゥヴ", "エ": "エケゲセゼテデネヘベペメレェ",
    "オ": "オコゴソゾトドノホボポモヨョロヲォ",
}  # fmt: skip
VOWEL = {kana: vowel for vowel, row in _ROWS.items() for kana in row}
_VU = str.maketrans({"ヅ": "ズ", "ヂ": "ジ"})


def canonical(kana: str) -> str:
    """One spelling per pronunciation, so CER counts sounds, not spelling conventions: spaces go,
    ヴ is バ-row, ー becomes the vowel it lengthens, and the long-vowel spellings エイ/オウ are
    written as said (エエ/オオ). Particles stay as written (ヲ is not folded into オ)."""
    kana = "".join(kana.split()).translate(_VU)
    for src, dst in (("ヴァ", "バ"), ("ヴィ", "ビ"), ("ヴェ", "ベ"), ("ヴォ", "ボ"), ("ヴ", "ブ")):
        kana = kana.replace(src, dst)
    out: list[str] = []
    for ch in kana:
        prev = VOWEL.get(out[-1], "") if out else ""
        if (ch == "ー" and prev) or (ch, prev) in (("イ", "エ"), ("ウ", "オ")):
            ch = prev
        out.append(ch)
    return "".join(out)


def edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def load_cases() -> list[tuple[str, str, set[str]]]:
    cases = []
    for line in CASES_PATH.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            text, expected, tags = line.split("\t")
            cases.append((text, expected, set(tags.split())))
    return cases


def cer(pairs: list[tuple[str, str]]) -> float:
    """Summed edit distance over summed reference length, on canonical forms."""
    errors = sum(edit_distance(canonical(hyp), canonical(ref)) for hyp, ref in pairs)
    return errors / sum(len(canonical(ref)) for _, ref in pairs)


@pytest.fixture(scope="module")
def kana() -> KanaFrontend:
    return KanaFrontend()


def test_case_file_has_at_least_100_sentences() -> None:
    cases = load_cases()
    assert len(cases) >= 100
    assert {"ja", "num", "en", "id", "punct"} <= set().union(*(tags for *_, tags in cases))


def test_cer_over_the_case_file_is_at_most_2_percent(kana: KanaFrontend) -> None:
    cases = load_cases()
    pairs = [(kana.to_kana(text), expected) for text, expected, _ in cases]
    rate = cer(pairs)
    worst = sorted(pairs, key=lambda p: -edit_distance(canonical(p[0]), canonical(p[1])))[:8]
    detail = "\n".join(f"  got {hyp}\n want {ref}" for hyp, ref in worst)
    print(f"\nkana CER {rate:.2%} over {len(cases)} sentences")
    assert rate <= MAX_CER, f"CER {rate:.2%} > {MAX_CER:.0%}; worst:\n{detail}"


def test_pyopenjtalk_alone_does_worse_on_english(kana: KanaFrontend) -> None:
    import pyopenjtalk

    english = [(text, expected) for text, expected, tags in load_cases() if tags & {"en", "id"}]
    assert len(english) >= 30
    ours = cer([(kana.to_kana(text), expected) for text, expected in english])
    alone = cer([(str(pyopenjtalk.g2p(text, kana=True)), expected) for text, expected in english])
    print(f"\nEnglish/identifier cases: frontend CER {ours:.2%}, pyopenjtalk-plus alone {alone:.2%}")
    assert alone > 5 * ours and alone > 0.10


def test_median_sentence_takes_under_5_ms(kana: KanaFrontend) -> None:
    texts = [text for text, _, _ in load_cases()]
    for text in texts:  # warm the e2k cache and the number cache, as a running node would be
        kana.to_kana(text)
    times = []
    for text in texts:
        start = time.perf_counter()
        kana.to_kana(text)
        times.append(time.perf_counter() - start)
    median_ms = statistics.median(times) * 1000
    print(f"\nkana median {median_ms:.2f} ms/sentence over {len(texts)} sentences")
    assert median_ms < 5


# --- one rule at a time ---


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("私は東京へ行きます。", "ワタシワトーキョーエイキマス。"),  # は→ワ, へ→エ as particles
        ("本を読む。", "ホンオヨム。"),  # を→オ
        ("はじめに、変数を確認します。", "ハジメニ、ヘンスーオカクニンシマス。"),  # は, へ inside words stay
        ("GitHubへpushしてはいけない。", "ギットハブエプッシュシテワイケナイ。"),  # after an English word too
    ],
)
def test_particles_are_spoken_as_pronounced(kana: KanaFrontend, text: str, want: str) -> None:
    assert canonical(kana.to_kana(text)) == canonical(want)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("3.14", "サンテンイチヨン"),
        ("50%", "ゴジュッパーセント"),
        ("2026年11月25日", "ニセンニジューロクネンジューイチガツニジューゴニチ"),
        ("10MB", "ジューメガバイト"),
        ("5GB", "ゴギガバイト"),  # pyopenjtalk alone reads 5G as ファイブジー
        ("1,000", "セン"),
        ("v2.3.1", "ブイニテンサンテンイチ"),
        ("-1", "マイナスイチ"),
        ("1~3", "イチカラサン"),
        ("250ms", "ニヒャクゴジューミリビョー"),
        ("1.5k", "センゴヒャク"),
        ("3x", "サンバイ"),
        ("2026-11-25", "ニセンニジューロクネンジューイチガツニジューゴニチ"),
        ("10:30", "ジュージサンジュップン"),
    ],
)
def test_numbers_units_dates_are_read(kana: KanaFrontend, text: str, want: str) -> None:
    assert canonical(kana.to_kana(text)) == canonical(want)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("GitHub", "ギットハブ"),
        ("JSON", "ジェイソン"),
        ("README", "リードミー"),
        ("API", "エーピーアイ"),
        ("npm", "エヌピーエム"),
        ("Python", "パイソン"),
        ("XYZW", "エックスワイゼットダブリュー"),  # capitals not in the dictionary are spelled
        ("S3", "エススリー"),
    ],
)
def test_english_words_and_acronyms(kana: KanaFrontend, text: str, want: str) -> None:
    assert canonical(kana.to_kana(text)) == canonical(want)


def test_unknown_english_word_goes_through_e2k(kana: KanaFrontend) -> None:
    out = kana.to_kana("Terraformを使う")
    assert out.endswith("オツカウ") and not any("a" <= c.lower() <= "z" for c in out)
    assert kana.english.word("qzxv") == "キューゼットエックスブイ"  # unpronounceable: spelled


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("setup.py", "セットアップ ドット パイ"),
        ("handle_message", "ハンドル メッセージ"),
        ("getUserName", "ゲット ユーザー ネーム"),
        ("HTTPServer", "エイチティーティーピー サーバー"),
        ("bus/node.py", "バス スラッシュ ノード ドット パイ"),
        ("os.path.join", "オーエス ドット パス ドット ジョイン"),
    ],
)
def test_identifiers_are_split_into_words(kana: KanaFrontend, text: str, want: str) -> None:
    assert kana.to_kana(text) == want


def test_punctuation_is_kept_as_pauses(kana: KanaFrontend) -> None:
    assert kana.to_kana("はい, わかりました. 本当?") == "ハイ、ワカリマシタ。ホントー？"
    assert kana.to_kana("注意：これは「重要」です！") == "チューイ、コレワジューヨーデス！"
    assert kana.to_kana("、、。") == "。"  # a run of marks becomes its strongest
    assert kana.to_kana("") == ""


def test_output_is_kana_and_pauses_only(kana: KanaFrontend) -> None:
    for text, _, _ in load_cases():
        out = kana.to_kana(text)
        bad = [c for c in out if not ("ァ" <= c <= "ヺ" or c in "ー、。？！ ")]
        assert not bad, (text, out, bad)


def test_to_kana_is_thread_safe(kana: KanaFrontend) -> None:
    texts = [text for text, _, _ in load_cases()][:40]
    want = [kana.to_kana(t) for t in texts]
    got: dict[int, list[str]] = {}

    def work(n: int) -> None:
        got[n] = [kana.to_kana(t) for t in texts]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(result == want for result in got.values())


def test_words_file_overrides_and_bad_file_is_an_error(tmp_path: Path) -> None:
    words = tmp_path / "words.tsv"
    words.write_text("# custom\ngithub\tギットハブ\nfrobnicate\tフロブニケート\n", encoding="utf-8")
    assert KanaFrontend(words).to_kana("frobnicateする") == "フロブニケートスル"
    words.write_text("no tab here\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"words\.tsv:1"):
        KanaFrontend(words)


def test_cli_prints_what_the_synthesizer_receives(monkeypatch, capsys) -> None:
    assert COMMANDS["kana"][0] == "stream_tts.commands.kana:cli_kana"
    assert cli_kana(["GitHubへpushしました。"]) == 0
    assert capsys.readouterr().out == "ギットハブエプッシュシマシタ。\n"
    monkeypatch.setattr("sys.stdin", io.StringIO("README.mdを読む\n50%です\n"))
    assert cli_kana(["-"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "リードミー ドット エムディーオヨム",
        "ゴジュッパーセントデス",
    ]

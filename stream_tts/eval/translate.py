"""`stream-tts eval translate`: how good the translations of your own weights are, measured.

Two sets ship with it (stream_tts/eval/data/, README.md there): 100 segments of WMT24++ en-ja
and 60 sentences a coding agent says, with the tokens that must survive verbatim. Every source
takes the pipeline's own path: ingest's text engine (markdown, paths, sentence cuts:
nodes/ingest/text/), then the translate node's pieces, as the node uses them: placeholders
(nodes/translate/placeholders.py), the engine (nodes/translate/llama/, loaded from [translate]
as the node loads it) with the row's earlier sentences as context, the clause stream that cleans
what the model said (nodes/translate/ja_text.py), one strict retry when no Japanese came. What is
scored is what the voice would say.

Per set and translator ("tier"): chrF (sacrebleu) against the references, COMET when the
`unbabel-comet` package is installed and --comet is given (never required), the share of
must-survive tokens that reached speech, the share of outputs the voice should not say as they
are (no Japanese, or notes, explanations, labels or English left in), the share whose raw answer
needed cleaning (extra lines, quotes, labels, notes: caught before speech, but a sign of a model
that does not follow the prompt), and milliseconds per sentence (to the last clause, and to the
first one). Several --translator options are measured one after the other and shown side by side;
--json writes everything, every output included.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().with_name("data")
SETS = {"wmt24pp": "wmt24pp_en-ja.jsonl", "coding": "coding_en-ja.jsonl"}
COMET_MODEL = "Unbabel/wmt22-comet-da"
JSON_VERSION = 1

_JA = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff66-\uff9f々〆ヶ]")
_LATIN = re.compile(r"[A-Za-z]")
# What a translation must not carry into speech: translator's notes and labels, in either language.
_NOTE = re.compile(
    r"※|訳注|直訳|意訳|補足[:：]|注[:：]|注意書き|翻訳[:：]|訳[:：]|\b(?:note|translation|translated|"
    r"literally|in japanese)\b",
    re.IGNORECASE,
)
_ENGLISH_RUN = re.compile(r"[A-Za-z][A-Za-z']*(?:[ ,]+[A-Za-z][A-Za-z']*){3,}")  # 4+ English words
_QUOTES = re.compile(r"[「」『』“”\"]")
_PARENS = re.compile(r"[()（）]")


@dataclass(frozen=True)
class Row:
    id: str
    source: str
    reference: str
    keep: tuple[str, ...] = ()
    domain: str = ""


def load_set(name: str, limit: int | None = None) -> list[Row]:
    path = DATA_DIR / SETS[name]
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            r = json.loads(line)
            rows.append(
                Row(r["id"], r["source"], r["reference"], tuple(r.get("keep", ())), r.get("domain", ""))
            )
    return rows[:limit] if limit else rows


# ---- one row through the pipeline's translate path ----------------------------------------------
@dataclass
class Output:
    id: str
    text: str  # what the voice would say (every sentence's clauses)
    raw: str  # what the model wrote, every attempt of every sentence
    sentences: int = 0
    ms: list[float] = field(default_factory=list)  # per sentence: to its last clause
    first_clause_ms: list[float] = field(default_factory=list)
    retried: int = 0  # sentences whose first answer had no Japanese
    needed_cleaning: bool = False
    kept: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    not_japanese: bool = False
    extras: list[str] = field(default_factory=list)  # what the voice would read that is no translation


def translate_row(engine: Any, row: Row, min_clause_chars: int, context_pairs: int) -> Output:
    """The row as the pipeline says it: ingest's sentences, each translated as the node does."""
    from nodes.ingest.text.speakable import SentenceStream

    stream = SentenceStream(idle_flush_s=None)
    sentences = stream.feed(row.source) + stream.flush()
    out = Output(row.id, "", "", sentences=len(sentences))
    pairs: list[tuple[str, str]] = []
    spoken, raws, originals = [], [], []
    for english in sentences:
        s = translate_sentence(
            engine, english, pairs[-context_pairs:] if context_pairs else [], min_clause_chars
        )
        spoken.append(s.text)
        raws.append(s.raw)
        originals += s.originals
        out.ms.append(s.ms)
        if s.first_clause_ms is not None:
            out.first_clause_ms.append(s.first_clause_ms)
        out.retried += s.retried
        out.needed_cleaning |= s.needed_cleaning or _raw_extras(s.raw, english)
        if s.masked:
            pairs.append((s.protected, s.masked))
    out.text = "".join(spoken).strip()
    out.raw = "\n".join(raws)
    out.kept = [k for k in row.keep if k in out.text]
    out.lost = [k for k in row.keep if k not in out.text]
    out.not_japanese = not is_mostly_japanese(out.text, [*originals, *row.keep])
    out.extras = voice_extras(out.text, row.source)
    return out


@dataclass
class Sentence:
    text: str
    raw: str
    protected: str
    masked: str
    originals: list[str]
    ms: float
    first_clause_ms: float | None
    retried: int
    needed_cleaning: bool


def translate_sentence(
    engine: Any, english: str, context: Sequence[tuple[str, str]], min_clause_chars: int
) -> Sentence:
    """One sentence, as TranslateNode.handle does it (protect, translate, clean, one strict retry)."""
    from nodes.translate.ja_text import ClauseStream
    from nodes.translate.placeholders import protect, restore

    t0 = time.perf_counter()
    protected = protect(english)
    originals = list(protected.originals)
    if not protected.needs_translation:  # only code, paths, numbers: said as written
        text = restore(protected.text, protected.originals).text.strip()
        return Sentence(text, "", protected.text, "", originals, _ms(t0), _ms(t0), 0, False)
    raws: list[str] = []
    first: float | None = None
    clauses: list[str] = []
    stream = ClauseStream(protected.originals, min_clause_chars)
    retried = 0
    done_ms: float | None = None
    for strict in (False, True):
        stream = ClauseStream(protected.originals, min_clause_chars)
        raw: list[str] = []
        clauses = []
        done_ms = None
        pieces = engine.translate(protected.text, [] if strict else context, strict=strict)
        try:
            for piece in pieces:
                raw.append(piece)
                got = [] if stream.done else stream.feed(piece)
                if got and first is None:
                    first = _ms(t0)
                clauses += [c.text for c in got]
                if stream.done and done_ms is None:
                    done_ms = _ms(t0)  # the node stops decoding here
                if stream.done and not _still_listening(raw):
                    break  # the harness reads a little on (not timed), to see what came next
        finally:
            close = getattr(pieces, "close", None)
            if callable(close):
                close()
        clauses += [c.text for c in stream.finish()]
        raws.append("".join(raw))
        if stream.japanese_seen:
            break
        retried = 1
    done_ms = done_ms if done_ms is not None else _ms(t0)
    if first is None and clauses:
        first = done_ms
    cleaned = bool(stream.dropped) or bool(stream.thought)
    return Sentence(
        "".join(clauses), "\n".join(raws), protected.text, "".join(stream.masked), originals, done_ms, first,
        retried, cleaned,
    )  # fmt: skip


MAX_AFTER_DONE_CHARS = 200  # what the harness reads past the node's stop, to see if the model went on


def _still_listening(raw: list[str]) -> bool:
    """After the first Japanese line the node stops decoding; the harness reads on a little (time
    not counted: ms is taken at the last clause) to see whether the model would have added notes."""
    text = "".join(raw)
    after = text.split("\n", 1)[1] if "\n" in text.strip("\n") else ""
    return len(after) < MAX_AFTER_DONE_CHARS and not after.endswith("\n\n\n")


# ---- what is wrong with an output ---------------------------------------------------------------
def is_mostly_japanese(text: str, copied: Sequence[str] = ()) -> bool:
    """Japanese characters outnumber the letters left once what is copied verbatim is taken out."""
    for token in sorted(copied, key=len, reverse=True):
        text = text.replace(token, " ")
    ja = len(_JA.findall(text))
    return ja > 0 and ja >= len(_LATIN.findall(text))


def voice_extras(text: str, source: str) -> list[str]:
    """What the voice would read that is no translation: notes, labels, English sentences that are
    not in the source."""
    found = [m.group(0) for m in _NOTE.finditer(text) if m.group(0).lower() not in source.lower()]
    found += [m.group(0) for m in _ENGLISH_RUN.finditer(text) if m.group(0) not in source]
    return found


def _raw_extras(raw: str, source: str) -> bool:
    """The model's raw answer carried what the cleaner had to take out: more than one line of
    answer, quotes or brackets the source does not have, a label or note."""
    answer = [line for line in raw.split("\n") if line.strip()]
    if len(answer) > 1 and _JA.search(answer[0]):
        return True
    if _QUOTES.search(raw) and not _QUOTES.search(source) and "'" not in source:
        return True
    if _PARENS.search(raw) and not _PARENS.search(source):
        return True
    return bool(_NOTE.search(raw)) and not _NOTE.search(source)


# ---- scores ------------------------------------------------------------------------------------
def score(rows: list[Row], outputs: list[Output]) -> dict[str, Any]:
    from sacrebleu.metrics import CHRF

    chrf = CHRF().corpus_score([o.text for o in outputs], [[r.reference for r in rows]]).score
    keep_total = sum(len(r.keep) for r in rows)
    ms = [m for o in outputs for m in o.ms]
    first = [m for o in outputs for m in o.first_clause_ms]
    n = len(outputs)
    bad = [o for o in outputs if o.not_japanese or o.extras]
    return {
        "rows": n,
        "sentences": sum(o.sentences for o in outputs),
        "chrf": round(chrf, 2),
        "kept": round(sum(len(o.kept) for o in outputs) / keep_total, 4) if keep_total else None,
        "kept_tokens": f"{sum(len(o.kept) for o in outputs)}/{keep_total}",
        "bad": round(len(bad) / n, 4) if n else 0.0,
        "not_japanese": sum(o.not_japanese for o in outputs),
        "with_extras": sum(bool(o.extras) for o in outputs),
        "needed_cleaning": round(sum(o.needed_cleaning for o in outputs) / n, 4) if n else 0.0,
        "retried": sum(o.retried for o in outputs),
        "ms_per_sentence": round(statistics.fmean(ms), 1) if ms else None,
        "ms_per_sentence_p50": round(statistics.median(ms), 1) if ms else None,
        "first_clause_ms_p50": round(statistics.median(first), 1) if first else None,
    }


def comet(rows: list[Row], outputs: list[Output], model_name: str = COMET_MODEL) -> float:
    """COMET system score (unbabel-comet; downloads its model on first use)."""
    from comet import download_model, load_from_checkpoint

    model = load_from_checkpoint(download_model(model_name))
    data = [{"src": r.source, "mt": o.text, "ref": r.reference} for r, o in zip(rows, outputs, strict=True)]
    try:
        import torch

        gpus = 1 if torch.cuda.is_available() else 0
    except ImportError:
        gpus = 0
    return round(float(model.predict(data, batch_size=16, gpus=gpus, progress_bar=False).system_score), 4)


# ---- tiers -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tier:
    label: str  # "7b", "30b-a3b", or the GGUF's file name
    model: Path


def resolve_tiers(names: list[str], section: dict[str, Any], base_dir: Path) -> list[Tier]:
    """Each --translator: a manifest size (fetched into models/weights/) or a GGUF path; none
    given: what [translate] loads."""
    from bus.errors import ModelLoadError
    from models.manifest import WEIGHTS_DIR, load_manifest
    from nodes.translate.settings import translate_settings

    if not names:
        settings, knobs = translate_settings(section, base_dir)
        return [Tier(knobs["size"] or settings.model.name, settings.model)]
    manifest = load_manifest()
    tiers = []
    for name in names:
        if name in manifest.translators:
            tiers.append(Tier(name, manifest.translator(name).local_path(WEIGHTS_DIR)))
        elif name.endswith(".gguf") or "/" in name:
            path = Path(name).expanduser()
            tiers.append(Tier(path.name, path if path.is_absolute() else Path.cwd() / path))
        else:
            known = ", ".join(manifest.translators)
            raise ModelLoadError(f"--translator {name}: not a manifest size ({known}) nor a .gguf path")
    for t in tiers:
        if not t.model.is_file():
            fix = f"stream-tts models fetch --translator {t.label}" if t.label in manifest.translators else ""
            raise ModelLoadError(f"{t.label}: {t.model} is not there" + (f" ({fix})" if fix else ""))
    return tiers


def run_tier(
    tier: Tier,
    sets: dict[str, list[Row]],
    section: dict[str, Any],
    base_dir: Path,
    progress: Any = None,
    task: Any = None,
) -> dict[str, Any]:
    from nodes.translate.llama.engine import LlamaTranslator
    from nodes.translate.settings import translate_settings

    settings, knobs = translate_settings({**section, "model": str(tier.model)}, base_dir)
    t0 = time.perf_counter()
    engine = LlamaTranslator(settings)
    load_s = time.perf_counter() - t0
    result: dict[str, Any] = {"translator": tier.label, "model": str(tier.model), "load_s": round(load_s, 2)}
    result["engine"] = engine.describe()
    outputs: dict[str, list[Output]] = {}
    try:
        for name, rows in sets.items():
            outputs[name] = []
            for row in rows:
                outputs[name].append(
                    translate_row(engine, row, knobs["min_clause_chars"], knobs["context_pairs"])
                )
                if progress is not None:
                    progress.advance(task)
    finally:
        engine.close()
    result["sets"] = {name: score(sets[name], outs) for name, outs in outputs.items()}
    result["outputs"] = {name: [asdict(o) for o in outs] for name, outs in outputs.items()}
    result["_outputs"] = outputs
    return result


# ---- the command -------------------------------------------------------------------------------
METRICS = [  # (key, label, how to show it)
    ("chrf", "chrF", "{:.1f}"),
    ("comet", "COMET", "{:.3f}"),
    ("kept", "tokens kept", "{:.1%}"),
    ("bad", "bad outputs", "{:.1%}"),
    ("needed_cleaning", "raw needed cleaning", "{:.1%}"),
    ("ms_per_sentence", "ms / sentence", "{:.0f}"),
    ("first_clause_ms_p50", "first clause ms (p50)", "{:.0f}"),
]


def table(results: list[dict[str, Any]], sets: dict[str, list[Row]]) -> Any:
    from rich.table import Table

    t = Table(title="stream-tts eval translate (English -> Japanese)", title_justify="left")
    t.add_column("set")
    t.add_column("metric")
    for r in results:
        t.add_column(r["translator"], justify="right")
    for name, rows in sets.items():
        for i, (key, label, fmt) in enumerate(METRICS):
            values = [r["sets"][name].get(key) for r in results]
            if all(v is None for v in values):
                continue
            t.add_row(
                f"{name} ({len(rows)})" if i == 0 else "",
                label,
                *("-" if v is None else fmt.format(v) for v in values),
            )
        t.add_section()
    return t


def cli_eval(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="stream-tts eval", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("translate", help="measure the translator(s) on the shipped English->Japanese sets")
    p.add_argument(
        "--translator",
        action="append",
        default=[],
        metavar="SIZE|GGUF",
        help="a manifest size (7b, 30b-a3b, ...) or a GGUF path; repeat to compare (default: [translate])",
    )
    p.add_argument("--set", choices=[*SETS, "all"], default="all", help="which set (default: all)")
    p.add_argument("--limit", type=int, default=None, help="only the first N rows of each set")
    p.add_argument("--json", metavar="FILE", help="write every score and output as JSON (- for stdout)")
    p.add_argument(
        "--comet", action="store_true", help=f"also COMET ({COMET_MODEL}; pip install unbabel-comet)"
    )
    p.add_argument("--config", help="TOML config: its [translate] section (n_gpu_layers, n_ctx, ...)")
    args = parser.parse_args(argv)
    return eval_translate(args)


def eval_translate(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from bus.config import ConfigError, load_config
    from bus.errors import EngineError

    err = Console(stderr=True)
    try:
        import sacrebleu  # noqa: F401
    except ImportError:
        _say("E eval: sacrebleu is not installed: pip install 'stream-tts[eval]' (make setup installs it)")
        return 2
    if args.comet:
        try:
            import comet
        except ImportError:
            _say("E eval: --comet needs unbabel-comet: pip install 'stream-tts[eval-comet]'")
            return 2
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        _say(f"E eval: {exc}")
        return 2
    section = dict(config.section("translate"))
    names = list(SETS) if args.set == "all" else [args.set]
    sets = {name: load_set(name, args.limit) for name in names}
    try:
        tiers = resolve_tiers(args.translator, section, config.base_dir)
    except EngineError as exc:
        _say(f"E eval: {exc}")
        return 2
    results = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err) as progress:
        for tier in tiers:
            task = progress.add_task(f"{tier.label}", total=sum(len(r) for r in sets.values()))
            try:
                result = run_tier(tier, sets, section, config.base_dir, progress, task)
            except EngineError as exc:
                progress.stop()
                _say(f"E eval: {tier.label}: {exc}")
                return 1
            if args.comet:
                progress.update(task, description=f"{tier.label}: COMET")
                for name, outs in result["_outputs"].items():
                    result["sets"][name]["comet"] = comet(sets[name], outs)
            results.append(result)
    out = Console(width=max(Console().width, 100))
    out.print(table(results, sets))
    if not args.comet:
        out.print("COMET: not measured (optional: pip install unbabel-comet, then --comet)")
    report = {
        "version": JSON_VERSION,
        "sets": {name: {"file": SETS[name], "rows": len(rows)} for name, rows in sets.items()},
        "tiers": [{k: v for k, v in r.items() if k != "_outputs"} for r in results],
    }
    if args.json == "-":
        print(json.dumps(report, ensure_ascii=False, indent=1))
    elif args.json:
        Path(args.json).write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
        _say(f"I eval: wrote {args.json}")
    return 0


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 2)


if __name__ == "__main__":
    sys.exit(cli_eval(sys.argv[1:]))

"""The model manifest (models/manifest.toml), typed: which files make up each model, where they
come from, and how to check them. Only the standard library, so `stream-tts` can read it anywhere.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_PATH = Path(__file__).resolve().with_name("manifest.toml")
WEIGHTS_DIR = Path(__file__).resolve().with_name("weights")  # git-ignored; fetched files go here
DEFAULT_TRANSLATOR = "7b"  # the fallback: the smallest and fastest (models/choose.py picks per machine)
AUTO = "auto"  # `--translator auto` / `[translate] size = "auto"`: chosen by memory (models/choose.py)
DEFAULT_VOICE = "CosyVoice2-0.5B"  # fetched into WEIGHTS_DIR / DEFAULT_VOICE (synthesize's model_dir)
HF_URL = "https://huggingface.co/{repo}/resolve/main/{name}"


class ManifestError(ValueError):
    """The manifest is missing, not TOML, or lacks a model or key that was asked for."""


@dataclass(frozen=True)
class ModelFile:
    """One file of a model. `size` (bytes) and `sha256` are None where no trusted value is known;
    a file without a sha256 says why in `no_sha256` (the manifest must), and is then only ever
    size-checked, never reported as verified. `url` is set for a file from outside the model's
    hub repo (fetched over plain HTTPS)."""

    name: str
    size: int | None = None
    sha256: str | None = None
    url: str | None = None
    no_sha256: str | None = None  # why there is no public sha256 to check it against

    @property
    def verifiable(self) -> bool:
        return self.sha256 is not None


@dataclass(frozen=True)
class TranslatorModel:
    """A Qwen2.5-Instruct or Qwen3 GGUF, possibly split in shards (llama.cpp loads it from the
    first). `revision`: the hub commit its numbers belong to ("main" for the Qwen team's own
    repos, whose files do not change; a pinned commit for a third-party quantization)."""

    size: str  # "7b", "14b", "qwen3-8b", "30b-a3b", ...
    repo: str
    quant: str
    files: tuple[ModelFile, ...]
    revision: str = "main"

    @property
    def first_shard(self) -> str:
        return self.files[0].name

    @property
    def sizes(self) -> tuple[int | None, ...]:
        return tuple(f.size for f in self.files)

    @property
    def sha256(self) -> tuple[str | None, ...]:
        return tuple(f.sha256 for f in self.files)

    @property
    def total_bytes(self) -> int | None:
        """All shards together, or None if any size is unknown."""
        sizes = self.sizes
        return None if any(s is None for s in sizes) else sum(s for s in sizes if s is not None)

    def url(self, file: ModelFile) -> str:
        return HF_URL.format(repo=self.repo, name=file.name).replace("/main/", f"/{self.revision}/")

    def local_path(self, weights_dir: Path = WEIGHTS_DIR) -> Path:
        """Where the first shard lives once fetched (what the translate node loads)."""
        return weights_dir / self.first_shard


@dataclass(frozen=True)
class VoiceModel:
    """A CosyVoice model folder: `files` are paths inside the repo (and inside the local folder);
    `extra` files come from elsewhere by URL into the same folder (the default voice's prompt)."""

    name: str  # "CosyVoice2-0.5B": also the folder under the weights dir
    repo: str
    revision: str
    files: tuple[ModelFile, ...]
    extra: tuple[ModelFile, ...] = ()

    def url(self, file: ModelFile) -> str:
        return file.url or f"https://huggingface.co/{self.repo}/resolve/{self.revision}/{file.name}"

    def local_dir(self, weights_dir: Path = WEIGHTS_DIR) -> Path:
        """The folder the synthesize node loads (its `model_dir`)."""
        return weights_dir / self.name


@dataclass(frozen=True)
class Manifest:
    translators: dict[str, TranslatorModel]
    voices: dict[str, VoiceModel] = field(default_factory=dict)

    def translator(self, size: str = DEFAULT_TRANSLATOR) -> TranslatorModel:
        try:
            return self.translators[size]
        except KeyError:
            known = ", ".join(self.translators) or "none"
            raise ManifestError(f"no translator model {size!r} in the manifest (known: {known})") from None

    def voice(self, name: str = DEFAULT_VOICE) -> VoiceModel:
        try:
            return self.voices[name]
        except KeyError:
            known = ", ".join(self.voices) or "none"
            raise ManifestError(f"no voice model {name!r} in the manifest (known: {known})") from None


def load_manifest(path: Path = MANIFEST_PATH) -> Manifest:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"model manifest {path} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"model manifest {path} is not valid TOML: {exc}") from None
    table = raw.get("translator", {})
    if not isinstance(table, dict):
        raise ManifestError("[translator] must be a table")
    voices = raw.get("voice", {})
    if not isinstance(voices, dict):
        raise ManifestError("[voice] must be a table")
    return Manifest(
        translators={size: _translator(size, entry) for size, entry in table.items()},
        voices={name: _voice(name, entry) for name, entry in voices.items()},
    )


def translator(size: str = DEFAULT_TRANSLATOR) -> TranslatorModel:
    """The manifest's entry for one translator size ("7b", ..., "72b", "qwen3-8b", "30b-a3b", ...)."""
    return load_manifest().translator(size)


def _voice(name: str, entry: Any) -> VoiceModel:
    where = f'[voice."{name}"]'
    if not isinstance(entry, dict):
        raise ManifestError(f"{where} must be a table")
    for key in ("repo", "revision"):
        if not isinstance(entry.get(key), str):
            raise ManifestError(f'{where} needs {key} = "..."')
    files = _files(where, f'voice."{name}"', entry)
    extra = _files(where, f'voice."{name}"', entry, "extra") if "extra" in entry else ()
    for f in extra:  # off the hub nothing else vouches for the bytes: all three are required
        if f.url is None or f.size is None or f.sha256 is None:
            raise ManifestError(f"{where} extra {f.name}: needs url, size and sha256")
    names = [f.name for f in (*files, *extra)]
    if len(set(names)) != len(names):
        raise ManifestError(f"{where}: a file name appears twice")
    return VoiceModel(name=name, repo=entry["repo"], revision=entry["revision"], files=files, extra=extra)


def _translator(size: str, entry: Any) -> TranslatorModel:
    where = f"[translator.{size}]"
    if not isinstance(entry, dict):
        raise ManifestError(f"{where} must be a table")
    out = _files(where, f"translator.{size}", entry)
    for key in ("repo", "quant"):
        if not isinstance(entry.get(key), str):
            raise ManifestError(f'{where} needs {key} = "..."')
    revision = entry.get("revision", "main")
    if not isinstance(revision, str) or not revision:
        raise ManifestError(f'{where}: revision must be a commit or branch name, like "main"')
    return TranslatorModel(size=size, repo=entry["repo"], quant=entry["quant"], files=out, revision=revision)


def _files(where: str, table: str, entry: dict[str, Any], key: str = "files") -> tuple[ModelFile, ...]:
    files = entry.get(key)
    if not isinstance(files, list) or not files:
        raise ManifestError(f"{where} needs at least one [[{table}.{key}]] entry")
    out = []
    for f in files:
        if not isinstance(f, dict) or not isinstance(f.get("name"), str):
            raise ManifestError(f"{where}: every file needs a name")
        fsize, sha, url, why = f.get("size"), f.get("sha256"), f.get("url"), f.get("no_sha256")
        if fsize is not None and (type(fsize) is not int or fsize <= 0):
            raise ManifestError(f"{where} {f['name']}: size must be a positive integer (bytes)")
        if sha is not None and (not isinstance(sha, str) or len(sha) != 64):
            raise ManifestError(f"{where} {f['name']}: sha256 must be 64 hex characters")
        if url is not None and (not isinstance(url, str) or not url.startswith(("https://", "http://"))):
            raise ManifestError(f"{where} {f['name']}: url must be an http(s) URL")
        if sha is None and key != "extra" and (not isinstance(why, str) or not why.strip()):
            raise ManifestError(
                f'{where} {f["name"]}: needs sha256, or no_sha256 = "why none is published" '
                "(then it is only ever size-checked)"
            )
        if sha is not None and why is not None:
            raise ManifestError(f"{where} {f['name']}: has a sha256, so no_sha256 makes no sense")
        out.append(ModelFile(name=f["name"], size=fsize, sha256=sha, url=url, no_sha256=why))
    return tuple(out)

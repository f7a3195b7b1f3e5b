"""`stream-tts models fetch | list`: real weights from the Hugging Face hub into models/weights/.

A file's way in: hub -> models/weights/.partial/<repo>/ (huggingface_hub's own download: a
progress bar per file, resumed from the partial file after a cut, HF_ENDPOINT honoured) ->
size and sha256 checked against the manifest -> os.replace() into its final place. So a file in
models/weights/ is whole and checked; a bad one never gets there. Before any byte is fetched: the
hub must answer within seconds (else one message says what to get by hand and where to put it),
the disk must have room, and many GB need a yes (`--yes`; with no terminal to ask, the answer is no).
A model's `extra` files (not on the hub: the default voice's prompt WAV) take the same way over
plain HTTPS with huggingface_hub's `http_get` (Range resume, progress bar), no hub headers sent.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from glob import escape as glob_escape
from pathlib import Path
from urllib.parse import urlsplit

from models.manifest import (
    DEFAULT_TRANSLATOR,
    DEFAULT_VOICE,
    WEIGHTS_DIR,
    Manifest,
    ModelFile,
)

DEFAULT_ENDPOINT = "https://huggingface.co"
ASK_ABOVE_BYTES = 1_000_000_000  # a download larger than this needs a yes
DISK_MARGIN_BYTES = 256 * 2**20  # room left over once everything is down
HUB_TIMEOUT_S = 5.0  # the first request's wait for the hub before we call it unreachable
RETRIES = 3  # attempts per file; each one resumes from the partial file
HASH_CHUNK = 8 * 2**20
SHOW_HASH_ABOVE = 200 * 2**20  # files larger than this get a progress bar while hashed
PARTIAL_DIR = ".partial"
URL_PARTIAL = ".incomplete"  # suffix of an extra file's partial download in the staging area
VERIFIED_FILE = ".verified.json"


class FetchError(RuntimeError):
    """A fetch that cannot go on; the message says what to do."""


class HubUnreachable(FetchError):
    """No answer from the hub or an extra file's server (offline, DNS, firewall, timeout): nothing
    was downloaded. `where` names the server that did not answer."""

    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(message)
        self.where = where


class NotEnoughSpace(FetchError):
    """The disk cannot hold what is to be downloaded: refused before any byte was fetched."""


class BadChecksum(FetchError):
    """A downloaded file is not the manifest's: deleted, never put in place."""


class NotConfirmed(FetchError):
    """A large download was not agreed to (no --yes, no terminal, or the user said no)."""


@dataclass(frozen=True)
class Job:
    """One file of one model: where it comes from and where it must end up."""

    label: str  # "translator 7b", "voice CosyVoice2-0.5B"
    repo: str
    revision: str
    file: ModelFile
    dest: Path

    def url(self, endpoint: str) -> str:
        """An extra file's own URL, else where the hub at `endpoint` serves it."""
        hub = f"{endpoint.rstrip('/')}/{self.repo}/resolve/{self.revision}/{self.file.name}"
        return self.file.url or hub

    @property
    def on_hub(self) -> bool:
        return self.file.url is None


def endpoint() -> str:
    """The hub in use: HF_ENDPOINT (huggingface_hub's own variable, read now, not at import)."""
    return os.environ.get("HF_ENDPOINT", "").rstrip("/") or DEFAULT_ENDPOINT


def jobs_for(
    manifest: Manifest,
    translator: str | None,
    voice: str | None,
    weights_dir: Path = WEIGHTS_DIR,
    extra_only: bool = False,
) -> list[Job]:
    """Every file of the chosen translator (all shards, side by side) and voice folder, the voice's
    extra files last; `extra_only`: the voice's extra files alone (a folder fetched before them)."""
    jobs: list[Job] = []
    if translator and not extra_only:
        t = manifest.translator(translator)
        jobs += [Job(f"translator {t.size}", t.repo, t.revision, f, weights_dir / f.name) for f in t.files]
    if voice:
        v = manifest.voice(voice)
        folder = v.local_dir(weights_dir)
        files = v.extra if extra_only else (*v.files, *v.extra)
        jobs += [Job(f"voice {v.name}", v.repo, v.revision, f, folder / f.name) for f in files]
    return jobs


# ---- checking what is there ------------------------------------------------------------------
class VerifyCache:
    """sha256 of files already hashed, keyed by path, size and mtime: `list` stays fast."""

    def __init__(self, weights_dir: Path) -> None:
        self.path = weights_dir / VERIFIED_FILE
        try:
            self.data: dict[str, list[int | str]] = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            self.data = {}

    def get(self, file: Path) -> str | None:
        st = file.stat()
        rec = self.data.get(str(file.resolve()))
        if rec and rec[0] == st.st_size and rec[1] == st.st_mtime_ns:
            return str(rec[2])
        return None

    def put(self, file: Path, sha256: str) -> None:
        st = file.stat()
        self.data[str(file.resolve())] = [st.st_size, st.st_mtime_ns, sha256]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=0), encoding="utf-8")
        os.replace(tmp, self.path)


def sha256_file(path: Path, progress: bool = False) -> str:
    h = hashlib.sha256()
    size = path.stat().st_size
    bar = None
    if progress and size > SHOW_HASH_ABOVE:
        from tqdm import tqdm

        bar = tqdm(total=size, unit="B", unit_scale=True, desc=f"sha256 {path.name}", leave=False)
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
            if bar is not None:
                bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return h.hexdigest()


SIZE_ONLY = "ok (size-checked only)"  # a file with no public sha256: its size matches, no more


def file_state(job: Job, cache: VerifyCache, progress: bool = False) -> str:
    """'ok' (sha256 verified), SIZE_ONLY (the manifest has no sha256 for it: never 'verified'),
    'missing', 'wrong size', 'bad sha256'."""
    if not job.dest.is_file():
        return "missing"
    if job.file.size is not None and job.dest.stat().st_size != job.file.size:
        return "wrong size"
    if job.file.sha256 is None:
        return SIZE_ONLY
    digest = cache.get(job.dest)
    if digest is None:
        digest = sha256_file(job.dest, progress)
        cache.put(job.dest, digest)
    return "ok" if digest == job.file.sha256 else "bad sha256"


def is_ok(state: str) -> bool:
    return state.startswith("ok")


def checked(jobs: list[Job], what: str) -> str:
    """ "N files <what> and verified", or, where some have no public sha256, how many were
    verified and how many only size-checked (and why): never "verified" for those."""
    size_only = [j for j in jobs if j.file.sha256 is None]
    if not size_only:
        return f"{len(jobs)} files {what} and verified (sha256)"
    why = "; ".join(sorted({f"{j.file.name}: {j.file.no_sha256 or 'no sha256'}" for j in size_only}))
    return (
        f"{len(jobs)} files {what}: {len(jobs) - len(size_only)} verified (sha256), "
        f"{len(size_only)} size-checked only, not verified ({why})"
    )


# ---- space and the hub -----------------------------------------------------------------------
def staging_dir(weights_dir: Path, repo: str) -> Path:
    return weights_dir / PARTIAL_DIR / repo.replace("/", "--")


def url_partial(job: Job, weights_dir: Path) -> Path:
    """Where an extra file's download grows until it is checked."""
    return staging_dir(weights_dir, job.repo) / f"{job.file.name}{URL_PARTIAL}"


def already_have(job: Job, weights_dir: Path) -> int:
    """Bytes of this file already on disk in the staging area (a partial or an unchecked whole)."""
    if not job.on_hub:
        part = url_partial(job, weights_dir)
        return part.stat().st_size if part.is_file() else 0
    staging = staging_dir(weights_dir, job.repo)
    whole = staging / job.file.name
    if whole.is_file():
        return whole.stat().st_size
    # huggingface_hub's partial file: <local_dir>/.cache/huggingface/download/<dir>/<key>.<etag>.incomplete
    name = Path(job.file.name)
    meta = staging / ".cache" / "huggingface" / "download" / name.parent
    key = base64.urlsafe_b64encode(hashlib.sha1(f"{name.name}.metadata".encode()).digest()).decode()
    return max((p.stat().st_size for p in meta.glob(f"{glob_escape(key)}.*.incomplete")), default=0)


def free_bytes(path: Path) -> int:
    """Free space on the disk that holds `path` (or would, once created)."""
    p = path
    while not p.exists():
        p = p.parent
    return shutil.disk_usage(p).free


def bytes_needed(jobs: Iterable[Job], weights_dir: Path) -> tuple[int, int]:
    """(bytes still to download, files of unknown size)."""
    need, unknown = 0, 0
    for job in jobs:
        if job.file.size is None:
            unknown += 1
        else:
            need += max(job.file.size - already_have(job, weights_dir), 0)
    return need, unknown


def check_space(jobs: list[Job], weights_dir: Path, free: Callable[[Path], int] = free_bytes) -> int:
    need, _ = bytes_needed(jobs, weights_dir)
    have = free(weights_dir)
    if need + DISK_MARGIN_BYTES > have:
        raise NotEnoughSpace(
            f"not enough disk space: the download needs {human(need)} (+{human(DISK_MARGIN_BYTES)} "
            f"to spare) but the disk holding {weights_dir} has {human(have)} free. Nothing was downloaded.\n"
            "  Free some space, or fetch onto another disk with `--dest DIR` and point the config at it "
            "([translate] model, [synthesize] model_dir)."
        )
    return need


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def check_hub(job: Job, hub: str, timeout_s: float = HUB_TIMEOUT_S) -> None:
    """One HEAD request, no retries: the server answers in seconds or we say what to do by hand.
    Hub credentials go to the hub only, never to an extra file's server."""
    import requests
    from huggingface_hub.utils import build_hf_headers, get_session

    url = job.url(hub)
    where = f"the model hub at {hub}" if job.on_hub else origin(url)
    try:
        r = get_session().head(
            url, headers=build_hf_headers() if job.on_hub else {}, timeout=timeout_s, allow_redirects=False
        )
    except requests.Timeout:
        raise HubUnreachable(f"no answer within {timeout_s:.0f} s", where) from None
    except requests.RequestException as exc:
        errno = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(exc))
        raise HubUnreachable(errno.group(1).strip() if errno else short(exc), where) from None
    if r.status_code >= 400:
        login = " (or needs a login: `huggingface-cli login`)" if job.on_hub else ""
        raise FetchError(
            f"{where} answered {r.status_code} for {url}: the file is not there{login}. "
            "Nothing was downloaded."
        )


def check_servers(pending: list[Job], hub: str) -> None:
    """check_hub once per server the pending files come from (the hub, an extra file's host)."""
    first: dict[str, Job] = {}
    for job in pending:
        first.setdefault(origin(job.url(hub)), job)
    for job in first.values():
        check_hub(job, hub)


def manual_instructions(jobs: list[Job], hub: str, reason: str, where: str = "") -> str:
    total, _ = bytes_needed(jobs, Path("/nonexistent"))
    lines = [
        f"cannot reach {where or f'the model hub at {hub}'} ({reason}). Nothing was downloaded.",
        f"  To install by hand, download these {len(jobs)} files ({human(total)}) and put each where shown:",
    ]
    for job in jobs:
        lines += [f"    {job.url(hub)}", f"      -> {job.dest}"]
    lines += [
        "  then `stream-tts models list` checks their sizes and sha256.",
        "  Behind a mirror or proxy: HF_ENDPOINT=https://... (or HTTPS_PROXY) stream-tts models fetch",
        "  To try the plumbing without real weights: stream-tts up --tiny",
    ]
    return "\n".join(lines)


# ---- the download ----------------------------------------------------------------------------
def _transient(exc: BaseException) -> bool:
    """A cut connection or a vanished hub: worth another try that resumes the partial file."""
    import requests
    from huggingface_hub.errors import LocalEntryNotFoundError

    if isinstance(exc, requests.RequestException | LocalEntryNotFoundError):
        return True
    return isinstance(exc, OSError) and "Consistency check failed" in str(exc)


def _hub_get(job: Job, weights_dir: Path, hub: str) -> Path:
    """One attempt through huggingface_hub (it resumes a partial file by itself)."""
    from huggingface_hub import hf_hub_download

    got = hf_hub_download(
        repo_id=job.repo,
        filename=job.file.name,
        revision=job.revision,
        local_dir=staging_dir(weights_dir, job.repo),
        endpoint=hub,
        etag_timeout=HUB_TIMEOUT_S,
    )
    return Path(got)


def _url_get(job: Job, weights_dir: Path) -> Path:
    """One attempt over plain HTTPS, appending to the partial file from where it stopped."""
    from huggingface_hub.file_download import http_get

    assert job.file.url is not None
    part = url_partial(job, weights_dir)
    part.parent.mkdir(parents=True, exist_ok=True)
    if job.file.size is not None and part.is_file() and part.stat().st_size > job.file.size:
        part.unlink()  # longer than the file can be: start again
    with part.open("ab") as f:
        http_get(
            job.file.url,
            f,
            resume_size=f.tell(),
            expected_size=job.file.size,
            displayed_filename=Path(job.file.name).name,
        )
    return part


def download(job: Job, weights_dir: Path, hub: str, cache: VerifyCache, say: Callable[[str], None]) -> None:
    """Download one file (resuming), check it, and rename it into place."""
    got: Path | None = None
    for attempt in range(1, RETRIES + 1):
        try:
            got = _hub_get(job, weights_dir, hub) if job.on_hub else _url_get(job, weights_dir)
            break
        except Exception as exc:
            if not _transient(exc):
                raise
            if attempt == RETRIES:
                raise FetchError(
                    f"{job.file.name}: download failed {RETRIES} times ({short(exc)}). "
                    "Run the same command again: it resumes where it stopped."
                ) from None
            lost = f"W models: {job.file.name}: connection lost ({short(exc)})"
            say(f"{lost}; resuming ({attempt + 1}/{RETRIES})")
    assert got is not None
    size = got.stat().st_size
    if job.file.size is not None and size != job.file.size:
        got.unlink()
        raise BadChecksum(
            f"{job.file.name}: downloaded {size} bytes, the manifest says {job.file.size}; deleted, "
            "not put in place. The hub's file differs from models/manifest.toml."
        )
    if job.file.sha256 is None:
        why = job.file.no_sha256 or "no sha256"
        say(f"W models: {job.file.name}: size-checked only, not verified ({why})")
    else:
        digest = sha256_file(got, progress=True)
        if digest != job.file.sha256:
            got.unlink()
            raise BadChecksum(
                f"{job.file.name}: sha256 {digest} does not match the manifest's {job.file.sha256}; "
                "the download was deleted and nothing was put in place. Run the fetch again; if it "
                "happens again, the hub's file differs from models/manifest.toml."
            )
    job.dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(got, job.dest)  # same disk (staging lives under weights_dir): atomic
    if job.file.sha256 is not None:
        cache.put(job.dest, job.file.sha256)


def confirm(need: int, where: Path, yes: bool, ask: Callable[[str], str] | None = None) -> None:
    if yes or need <= ASK_ABOVE_BYTES:
        return
    if ask is None:
        if not sys.stdin or not sys.stdin.isatty():
            raise NotConfirmed(
                f"this downloads {human(need)} into {where}; there is no terminal to ask on, so nothing "
                "was downloaded. To agree: stream-tts models fetch --yes   (or: make run YES=1)"
            )
        ask = input
    answer = ask(f"Download {human(need)} into {where}? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise NotConfirmed("nothing was downloaded. To agree without the question: --yes")


def fetch(
    manifest: Manifest,
    translator: str | None = DEFAULT_TRANSLATOR,
    voice: str | None = DEFAULT_VOICE,
    weights_dir: Path = WEIGHTS_DIR,
    yes: bool = False,
    say: Callable[[str], None] | None = None,
    free: Callable[[Path], int] = free_bytes,
    ask: Callable[[str], str] | None = None,
    extra_only: bool = False,
) -> list[Job]:
    """Bring every file of the chosen models into weights_dir; returns the jobs it downloaded.
    `extra_only`: only the voice's extra files (see jobs_for).

    Raises HubUnreachable (message: what to get by hand), NotEnoughSpace, NotConfirmed,
    BadChecksum or FetchError, each before or instead of putting anything bad in place."""
    out = say or _stderr
    jobs = jobs_for(manifest, translator, voice, weights_dir, extra_only)
    cache = VerifyCache(weights_dir)
    pending = [j for j in jobs if not is_ok(file_state(j, cache, progress=True))]
    if not pending:
        out(f"I models: {checked(jobs, 'present')} in {weights_dir}")
        return []
    hub = endpoint()
    try:
        check_servers(pending, hub)
    except HubUnreachable as exc:
        raise HubUnreachable(manual_instructions(pending, hub, str(exc), exc.where), exc.where) from None
    need = check_space(pending, weights_dir, free)
    confirm(need, weights_dir, yes, ask)
    for i, job in enumerate(pending, 1):
        size = human(job.file.size) if job.file.size is not None else "size unknown"
        src = f"{hub}/{job.repo}" if job.on_hub else origin(job.url(hub))
        out(f"I models: [{i}/{len(pending)}] {job.label}: {job.file.name} ({size}) from {src}")
        download(job, weights_dir, hub, cache, out)
    shutil.rmtree(weights_dir / PARTIAL_DIR, ignore_errors=True)
    out(f"I models: {checked(pending, 'downloaded')} into {weights_dir}")
    return pending


# ---- small helpers ---------------------------------------------------------------------------
def human(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


def short(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)

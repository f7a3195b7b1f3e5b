"""`stream-tts models fetch | list` against a local HTTP server standing in for the hub.

Real huggingface_hub downloads over real sockets, in real `stream-tts` processes; the only
stand-in is the hub itself (tests/fake_hub.py), which also serves the voice's extra file (the
default voice's prompt) the way a plain web server does. Nothing leaves the machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomli_w

from models import fetch as fetch_mod
from models.manifest import load_manifest
from tests.conftest import REPO, wait_for
from tests.fake_hub import FakeHub

GGUF_REPO = "test-org/Tiny-GGUF"
VOICE_REPO = "test-org/Tiny-Voice"
VOICE_REV = "feedfacefeedfacefeedfacefeedfacefeedface"


def blob(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


# huggingface_hub writes in 10 MiB pieces (DOWNLOAD_CHUNK_SIZE): the first shard is large enough
# that a cut halfway leaves a partial file to resume from.
SHARDS = {"tiny-00001-of-00002.gguf": blob(24 * 2**20, 1), "tiny-00002-of-00002.gguf": blob(300_000, 2)}
VOICE_FILES = {"voice.yaml": b"sample_rate: 24000\n", "sub/weights.pt": blob(200_000, 3)}
# The voice's extra file, off the hub: large enough that a cut halfway leaves a partial to resume.
PROMPT_NAME = "asset/zero_shot_prompt.wav"
PROMPT_PATH = "/FunAudioLLM/CosyVoice/b02d7e61/asset/zero_shot_prompt.wav"  # a raw URL's shape
PROMPT = blob(24 * 2**20, 4)


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def write_manifest(
    path: Path,
    sizes: dict[str, int] | None = None,
    shas: dict[str, str] | None = None,
    prompt_url: str | None = None,
) -> Path:
    """The test models' manifest; with `prompt_url`, the voice has PROMPT as its extra file."""
    sizes, shas = sizes or {}, shas or {}

    def entry(name: str, content: bytes) -> dict[str, object]:
        return {"name": name, "size": sizes.get(name, len(content)), "sha256": shas.get(name, sha(content))}

    raw: dict[str, dict[str, dict[str, object]]] = {
        "translator": {
            "tiny": {"repo": GGUF_REPO, "quant": "Q4_K_M", "files": [entry(n, c) for n, c in SHARDS.items()]}
        },
        "voice": {
            "TinyVoice": {
                "repo": VOICE_REPO,
                "revision": VOICE_REV,
                "files": [entry(n, c) for n, c in VOICE_FILES.items()],
            }
        },
    }
    if prompt_url:
        raw["voice"]["TinyVoice"]["extra"] = [{**entry(PROMPT_NAME, PROMPT), "url": prompt_url}]
    path.write_text(tomli_w.dumps(raw), encoding="utf-8")
    return path


@pytest.fixture
def hub():
    with FakeHub() as h:
        for name, content in SHARDS.items():
            h.add(GGUF_REPO, "main", name, content)
        for name, content in VOICE_FILES.items():
            h.add(VOICE_REPO, VOICE_REV, name, content)
        h.add_raw(PROMPT_PATH, PROMPT)
        yield h


def env_for(endpoint: str, tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "STREAM_TTS_"))}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp / "hf-home"), HF_HUB_DISABLE_TELEMETRY="1", **extra)
    return env


def run_cli(
    args: list[str], endpoint: str, tmp: Path, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream_tts.cli", "models", *args],
        env=env_for(endpoint, tmp, **env),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def fetch_args(manifest: Path, dest: Path, *extra: str) -> list[str]:
    return [
        "fetch",
        "--manifest",
        str(manifest),
        "--dest",
        str(dest),
        "--translator",
        "tiny",
        "--voice",
        "TinyVoice",
        *extra,
    ]


def assert_all_in_place(dest: Path) -> None:
    for name, content in SHARDS.items():
        assert (dest / name).read_bytes() == content
    for name, content in VOICE_FILES.items():
        assert (dest / "TinyVoice" / name).read_bytes() == content


def test_fetch_downloads_checks_and_renames_every_file_into_place(hub: FakeHub, tmp_path: Path) -> None:
    manifest, dest = write_manifest(tmp_path / "m.toml"), tmp_path / "weights"
    r = run_cli(fetch_args(manifest, dest), hub.url, tmp_path)
    assert r.returncode == 0, r.stderr
    assert_all_in_place(dest)
    assert not (dest / fetch_mod.PARTIAL_DIR).exists()  # the staging area is cleaned up
    # the voice's pinned revision is what was asked for, not main
    assert {e[1] for e in hub.log if VOICE_REPO in e[1]} <= {
        f"/{VOICE_REPO}/resolve/{VOICE_REV}/{n}" for n in VOICE_FILES
    }
    # list: both models present and verified
    listed = run_cli(["list", "--json", "--manifest", str(manifest), "--dest", str(dest)], hub.url, tmp_path)
    rows = {row["model"]: row for row in map(json.loads, listed.stdout.splitlines())}
    assert listed.returncode == 0
    assert rows["translator tiny"]["status"] == "ok (sha256 verified)"
    assert rows["translator tiny"]["bytes"] == sum(map(len, SHARDS.values()))
    assert rows["voice TinyVoice"]["files"] == "2/2"
    # a second fetch finds everything in place and downloads nothing
    gets = len([e for e in hub.log if e[0] == "GET"])
    again = run_cli(fetch_args(manifest, dest), hub.url, tmp_path)
    assert again.returncode == 0 and "present and verified" in again.stderr
    assert len([e for e in hub.log if e[0] == "GET"]) == gets


def test_the_voice_extra_file_comes_over_plain_http_checked_and_without_hub_credentials(
    hub: FakeHub, tmp_path: Path
) -> None:
    with FakeHub() as web:  # another server than the hub, as raw.githubusercontent.com is
        manifest = write_manifest(tmp_path / "m.toml", prompt_url=web.add_raw(PROMPT_PATH, PROMPT))
        dest = tmp_path / "weights"
        args = fetch_args(manifest, dest, "--translator", "none")
        r = run_cli(args, hub.url, tmp_path, HF_TOKEN="hf_secret")
    assert r.returncode == 0, r.stderr
    assert (dest / "TinyVoice" / PROMPT_NAME).read_bytes() == PROMPT
    assert f"{PROMPT_NAME} (25.2 MB) from {web.url}" in r.stderr
    assert not (dest / fetch_mod.PARTIAL_DIR).exists()
    # the hub got the token; the other server got nothing of it
    hub_sent = [{k.lower(): v for k, v in h.items()} for h in hub.headers]
    assert hub_sent and all(h.get("authorization") == "Bearer hf_secret" for h in hub_sent)
    assert [(e[0], e[1]) for e in web.log] == [("HEAD", PROMPT_PATH), ("GET", PROMPT_PATH)]
    assert not any(k.lower() == "authorization" for h in web.headers for k in h)
    listed = run_cli(["list", "--json", "--manifest", str(manifest), "--dest", str(dest)], hub.url, tmp_path)
    row = {r["model"]: r for r in map(json.loads, listed.stdout.splitlines())}["voice TinyVoice"]
    assert row["files"] == "3/3" and row["status"] == "ok (sha256 verified)"


def test_extra_only_brings_just_the_extra_file_into_a_folder_fetched_before_it(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    dest = tmp_path / "weights"
    old = load_manifest(write_manifest(tmp_path / "old.toml"))  # the manifest before extra files
    assert len(fetch_mod.fetch(old, None, "TinyVoice", dest, say=lambda _l: None)) == len(VOICE_FILES)
    new = load_manifest(write_manifest(tmp_path / "new.toml", prompt_url=hub.url + PROMPT_PATH))
    before = len(hub.log)
    got = fetch_mod.fetch(new, None, "TinyVoice", dest, say=lambda _l: None, extra_only=True)
    assert [j.file.name for j in got] == [PROMPT_NAME]
    assert {e[1] for e in hub.log[before:]} == {PROMPT_PATH}  # nothing else asked for again
    assert (dest / "TinyVoice" / PROMPT_NAME).read_bytes() == PROMPT


def test_an_extra_file_with_the_wrong_sha256_is_deleted_and_not_put_in_place(
    hub: FakeHub, tmp_path: Path
) -> None:
    manifest = write_manifest(
        tmp_path / "m.toml", shas={PROMPT_NAME: "cd" * 32}, prompt_url=hub.url + PROMPT_PATH
    )
    dest = tmp_path / "weights"
    r = run_cli(fetch_args(manifest, dest, "--translator", "none"), hub.url, tmp_path)
    assert r.returncode == 1
    assert "does not match the manifest" in r.stderr and "cd" * 32 in r.stderr
    assert not (dest / "TinyVoice" / PROMPT_NAME).exists()
    assert not list((dest / fetch_mod.PARTIAL_DIR).rglob("zero_shot_prompt*"))


def test_an_unreachable_extra_file_server_stops_the_fetch_before_any_byte(
    hub: FakeHub, tmp_path: Path
) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    s.close()
    manifest, dest = (
        write_manifest(tmp_path / "m.toml", prompt_url=closed + PROMPT_PATH),
        tmp_path / "weights",
    )
    r = run_cli(fetch_args(manifest, dest), hub.url, tmp_path)  # the hub answers; the other server does not
    assert r.returncode == 3, r.stderr
    assert f"cannot reach {closed} (Connection refused)" in r.stderr
    assert closed + PROMPT_PATH in r.stderr and str(dest / "TinyVoice" / PROMPT_NAME) in r.stderr
    assert not [e for e in hub.log if e[0] == "GET"] and not dest.exists()


def test_the_space_check_counts_an_extra_file_and_its_partial(tmp_path: Path) -> None:
    manifest = load_manifest(write_manifest(tmp_path / "m.toml", prompt_url="https://example.org/p.wav"))
    dest = tmp_path / "weights"
    job = fetch_mod.jobs_for(manifest, None, "TinyVoice", dest)[-1]
    assert job.file.name == PROMPT_NAME and job.url("http://hub") == "https://example.org/p.wav"
    voice_bytes = sum(map(len, VOICE_FILES.values()))
    assert fetch_mod.bytes_needed([job], dest) == (len(PROMPT), 0)
    part = fetch_mod.url_partial(job, dest)
    part.parent.mkdir(parents=True)
    part.write_bytes(PROMPT[:1000])  # a download cut short earlier
    jobs = fetch_mod.jobs_for(manifest, None, "TinyVoice", dest)
    assert fetch_mod.bytes_needed(jobs, dest) == (voice_bytes + len(PROMPT) - 1000, 0)


def test_the_real_manifest_pins_the_default_voice_prompt_where_synthesize_looks(tmp_path: Path) -> None:
    from models.manifest import ManifestError
    from nodes.synthesize.cosyvoice.voices import DEFAULT_PROMPT

    (extra,) = load_manifest().voice("CosyVoice2-0.5B").extra
    assert (
        extra.name == DEFAULT_PROMPT
    )  # fetched to where nodes/synthesize/cosyvoice/voices.py builds "default" from
    assert extra.url and extra.url.startswith("https://raw.githubusercontent.com/FunAudioLLM/CosyVoice/")
    assert extra.size and extra.sha256
    bad = write_manifest(tmp_path / "m.toml", prompt_url="https://example.org/p.wav")
    bad.write_text(bad.read_text().replace(f'sha256 = "{sha(PROMPT)}"', ""), encoding="utf-8")
    with pytest.raises(ManifestError, match="needs url, size and sha256"):
        load_manifest(bad)


@dataclass(frozen=True)
class Target:
    """A file to cut or kill a download of: a hub file, or the voice's extra file (plain HTTP)."""

    key: str  # FakeHub's fault key
    path: str  # what its GET requests end with
    args: tuple[str, ...]  # fetch only its model
    dest: str  # where it lands, under the weights dir
    content: bytes

    def job(self, manifest: Path, dest: Path) -> fetch_mod.Job:
        hub_file = self.args[0] == "--voice"
        jobs = fetch_mod.jobs_for(
            load_manifest(manifest), "tiny" if hub_file else None, None if hub_file else "TinyVoice", dest
        )
        return jobs[0] if hub_file else jobs[-1]


SHARD1 = "tiny-00001-of-00002.gguf"
TARGETS = {
    "hub": Target(f"{GGUF_REPO}/main/{SHARD1}", SHARD1, ("--voice", "none"), SHARD1, SHARDS[SHARD1]),
    "extra": Target(PROMPT_PATH, PROMPT_PATH, ("--translator", "none"), f"TinyVoice/{PROMPT_NAME}", PROMPT),
}


@pytest.mark.parametrize("where", TARGETS)
def test_fetch_resumes_with_a_range_request_after_the_connection_is_cut(
    hub: FakeHub, tmp_path: Path, where: str
) -> None:
    t = TARGETS[where]
    hub.cut.add(t.key)
    manifest = write_manifest(tmp_path / "m.toml", prompt_url=hub.url + PROMPT_PATH)
    dest = tmp_path / "weights"
    r = run_cli(fetch_args(manifest, dest, *t.args), hub.url, tmp_path)
    assert r.returncode == 0, r.stderr
    ranges = [g[2] for g in hub.gets(t.path)]
    assert len(ranges) == 2 and ranges[0] == "", ranges
    start = int(ranges[1].removeprefix("bytes=").rstrip("-"))  # the second GET picks up at the cut
    assert 0 < start <= len(t.content) // 2
    assert "connection lost" in r.stderr
    assert (dest / t.dest).read_bytes() == t.content


@pytest.mark.parametrize("where", TARGETS)
def test_fetch_killed_midway_resumes_on_the_next_run(hub: FakeHub, tmp_path: Path, where: str) -> None:
    t = TARGETS[where]
    hub.slow.add(t.key)
    manifest = write_manifest(tmp_path / "m.toml", prompt_url=hub.url + PROMPT_PATH)
    dest = tmp_path / "weights"
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream_tts.cli", "models", *fetch_args(manifest, dest, *t.args)],
        env=env_for(hub.url, tmp_path),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    staging = dest / fetch_mod.PARTIAL_DIR
    job = t.job(manifest, dest)
    try:
        assert wait_for(lambda: fetch_mod.already_have(job, dest) > 0, 20)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    had = fetch_mod.already_have(job, dest)
    assert staging.exists() and not (dest / t.dest).exists()  # nothing half-done is in place
    r = run_cli(fetch_args(manifest, dest, *t.args), hub.url, tmp_path)
    assert r.returncode == 0, r.stderr
    ranges = [g[2] for g in hub.gets(t.path)]
    assert ranges[0] == "" and ranges[-1].startswith("bytes=")
    assert int(ranges[-1].removeprefix("bytes=").rstrip("-")) >= had  # resumed, not restarted
    assert (dest / t.dest).read_bytes() == t.content


def test_a_file_whose_sha256_differs_from_the_manifest_is_rejected_and_not_put_in_place(
    hub: FakeHub, tmp_path: Path
) -> None:
    name = "tiny-00002-of-00002.gguf"
    manifest = write_manifest(tmp_path / "m.toml", shas={name: "ab" * 32})
    dest = tmp_path / "weights"
    r = run_cli(fetch_args(manifest, dest, "--voice", "none"), hub.url, tmp_path)
    assert r.returncode == 1
    assert "does not match the manifest" in r.stderr and "ab" * 32 in r.stderr
    assert not (dest / name).exists()
    assert not list((dest / fetch_mod.PARTIAL_DIR).rglob(name))  # the bad download is gone too
    assert (dest / "tiny-00001-of-00002.gguf").read_bytes() == SHARDS["tiny-00001-of-00002.gguf"]
    listed = run_cli(["list", "--json", "--manifest", str(manifest), "--dest", str(dest)], hub.url, tmp_path)
    row = json.loads(listed.stdout.splitlines()[0])
    assert row["status"] == "incomplete: 1 files missing"


def test_list_reports_a_corrupted_file(hub: FakeHub, tmp_path: Path) -> None:
    manifest, dest = write_manifest(tmp_path / "m.toml"), tmp_path / "weights"
    assert run_cli(fetch_args(manifest, dest, "--voice", "none"), hub.url, tmp_path).returncode == 0
    shard = dest / "tiny-00002-of-00002.gguf"
    data = bytearray(shard.read_bytes())
    data[1000] ^= 0xFF  # same size, one byte off: only the sha256 can tell
    shard.write_bytes(bytes(data))
    listed = run_cli(["list", "--json", "--manifest", str(manifest), "--dest", str(dest)], hub.url, tmp_path)
    row = json.loads(listed.stdout.splitlines()[0])
    assert listed.returncode == 1
    assert row["status"] == "bad: tiny-00002-of-00002.gguf: bad sha256"
    assert "stream-tts models fetch --translator tiny" in row["fix"]


def test_a_download_larger_than_the_free_space_is_refused_before_any_byte(
    hub: FakeHub, tmp_path: Path
) -> None:
    name = "tiny-00001-of-00002.gguf"
    manifest = write_manifest(tmp_path / "m.toml", sizes={name: 10**16})  # 10 PB: no disk has that free
    dest = tmp_path / "weights"
    r = run_cli(fetch_args(manifest, dest), hub.url, tmp_path)
    assert r.returncode == 4
    assert "not enough disk space" in r.stderr and "10000.0 TB" in r.stderr
    assert not [e for e in hub.log if e[0] == "GET"]  # refused before downloading anything
    assert not list(dest.rglob("*.gguf"))


def test_the_space_check_counts_what_is_already_downloaded(hub: FakeHub, tmp_path: Path) -> None:
    manifest, dest = load_manifest(write_manifest(tmp_path / "m.toml")), tmp_path / "weights"
    total = sum(map(len, SHARDS.values()))
    jobs = fetch_mod.jobs_for(manifest, "tiny", None, dest)
    with pytest.raises(fetch_mod.NotEnoughSpace):
        fetch_mod.check_space(jobs, dest, free=lambda _p: total + fetch_mod.DISK_MARGIN_BYTES - 1)
    assert fetch_mod.check_space(jobs, dest, free=lambda _p: total + fetch_mod.DISK_MARGIN_BYTES) == total


def test_no_network_fails_in_seconds_with_one_message_saying_what_to_download(tmp_path: Path) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    s.close()  # nothing listens there: connection refused, as on a machine with no network
    t0 = time.monotonic()
    r = run_cli(["fetch", "--dest", str(tmp_path / "w")], closed, tmp_path)  # the real manifest
    elapsed = time.monotonic() - t0
    assert r.returncode == 3
    assert elapsed < 10, elapsed
    assert r.stderr.count("E models:") == 1 and "Traceback" not in r.stderr
    assert "cannot reach the model hub" in r.stderr and "Connection refused" in r.stderr
    manifest = load_manifest()
    for job in fetch_mod.jobs_for(manifest, "7b", "CosyVoice2-0.5B", tmp_path / "w"):
        assert job.url(closed) in r.stderr and str(job.dest) in r.stderr
    assert "stream-tts up --tiny" in r.stderr
    assert not (tmp_path / "w").exists()


def test_a_hub_that_never_answers_is_given_up_on_in_seconds(tmp_path: Path) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)  # the kernel completes the handshake; nobody ever answers (a silent firewall)
    try:
        t0 = time.monotonic()
        r = run_cli(
            ["fetch", "--dest", str(tmp_path / "w")], f"http://127.0.0.1:{s.getsockname()[1]}", tmp_path
        )
        elapsed = time.monotonic() - t0
    finally:
        s.close()
    assert r.returncode == 3, r.stderr
    assert f"no answer within {fetch_mod.HUB_TIMEOUT_S:.0f} s" in r.stderr
    assert elapsed < fetch_mod.HUB_TIMEOUT_S + 8, elapsed


def test_a_large_download_asks_first_and_no_terminal_means_no(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr(fetch_mod, "ASK_ABOVE_BYTES", 1000)  # our 25 MB counts as "many GB"
    manifest, dest = load_manifest(write_manifest(tmp_path / "m.toml")), tmp_path / "weights"
    monkeypatch.setattr(sys, "stdin", open(os.devnull))  # noqa: SIM115 - no terminal
    with pytest.raises(fetch_mod.NotConfirmed, match="--yes"):
        fetch_mod.fetch(manifest, "tiny", None, dest, say=lambda _l: None)
    questions: list[str] = []

    def say_no(question: str) -> str:
        questions.append(question)
        return "n"

    with pytest.raises(fetch_mod.NotConfirmed):
        fetch_mod.fetch(manifest, "tiny", None, dest, say=lambda _l: None, ask=say_no)
    assert questions and "25.5 MB" in questions[0]
    assert not [e for e in hub.log if e[0] == "GET"]
    got = fetch_mod.fetch(manifest, "tiny", None, dest, say=lambda _l: None, ask=lambda _q: "y")
    assert len(got) == 2
    assert (dest / "tiny-00002-of-00002.gguf").read_bytes() == SHARDS["tiny-00002-of-00002.gguf"]


def test_a_file_with_no_public_sha256_is_size_checked_and_never_called_verified(
    hub: FakeHub, tmp_path: Path
) -> None:
    import tomllib

    manifest, dest = write_manifest(tmp_path / "m.toml"), tmp_path / "weights"
    raw = tomllib.loads(manifest.read_text(encoding="utf-8"))
    shard = raw["translator"]["tiny"]["files"][1]
    del shard["sha256"]
    manifest.write_text(tomli_w.dumps(raw), encoding="utf-8")
    with pytest.raises(Exception, match="no_sha256"):  # leaving it out silently is not allowed
        load_manifest(manifest)
    shard["no_sha256"] = "the publisher lists no sha256 for this file"
    manifest.write_text(tomli_w.dumps(raw), encoding="utf-8")
    r = run_cli(fetch_args(manifest, dest, "--voice", "none"), hub.url, tmp_path)
    assert r.returncode == 0, r.stderr
    name = "tiny-00002-of-00002.gguf"
    assert f"{name}: size-checked only, not verified (the publisher lists no sha256" in r.stderr
    assert "2 files downloaded: 1 verified (sha256), 1 size-checked only, not verified" in r.stderr
    assert "downloaded and verified" not in r.stderr
    again = run_cli(fetch_args(manifest, dest, "--voice", "none"), hub.url, tmp_path)
    assert "2 files present: 1 verified (sha256), 1 size-checked only" in again.stderr
    listed = run_cli(["list", "--json", "--manifest", str(manifest), "--dest", str(dest)], hub.url, tmp_path)
    row = json.loads(listed.stdout.splitlines()[0])
    assert listed.returncode == 0
    assert row["status"] == "ok: 1 verified (sha256), 1 size-checked only (no public sha256), not verified"
    (dest / name).write_bytes(b"x" * len(SHARDS[name]))  # same size, other bytes: nothing can tell
    row = json.loads(
        run_cli(
            ["list", "--json", "--manifest", str(manifest), "--dest", str(dest)], hub.url, tmp_path
        ).stdout.splitlines()[0]
    )
    assert "size-checked only" in row["status"] and "sha256 verified" not in row["status"]


def test_the_qwen3_translators_are_pinned_with_sizes_and_sha256() -> None:
    m = load_manifest()
    for size, name in (
        ("qwen3-8b", "Qwen3-8B-Q4_K_M.gguf"),
        ("qwen3-14b", "Qwen3-14B-Q4_K_M.gguf"),
        ("30b-a3b", "Qwen_Qwen3-30B-A3B-Instruct-2507-Q4_K_M.gguf"),
    ):
        t = m.translator(size)
        assert t.first_shard == name and t.quant == "Q4_K_M"
        assert all(f.size and f.sha256 and f.verifiable for f in t.files)
    moe = m.translator("30b-a3b")
    assert moe.revision == "6c6e8692f43e4ca663f7ece8229a1361090d3a4c"  # a third party's repo: pinned
    job = fetch_mod.jobs_for(m, "30b-a3b", None, Path("/w"))[0]
    assert job.url("https://huggingface.co") == (
        f"https://huggingface.co/{moe.repo}/resolve/{moe.revision}/{moe.first_shard}"
    )
    assert moe.url(moe.files[0]) == job.url("https://huggingface.co")
    assert {"7b", "14b", "32b", "72b"} <= set(m.translators)  # the Qwen2.5 ones stay

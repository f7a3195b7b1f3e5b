"""`stream-tts doctor` and `stream-tts run`, as real processes: a broken set-up, a machine that cannot
download, and a healthy one (tiny models, the whole pipeline up under supervisord on private ports)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from models.choose import choose_translator, detect_memory
from models.manifest import WEIGHTS_DIR, load_manifest
from tests.conftest import REPO, BusEnv


def translator():  # what `run` fetches on this machine: the translator picked for its memory
    manifest = load_manifest()
    return manifest.translator(choose_translator(manifest, detect_memory()).size)


# The doctor must never load torch or llama.cpp itself: it probes them in subprocesses.
DOCTOR_IN_PROCESS = (
    "import sys\nfrom stream_tts.cli import main\nrc = main(sys.argv[1:])\n"
    "heavy = [m for m in ('torch', 'llama_cpp', 'sounddevice') if m in sys.modules]\n"
    "print('HEAVY', heavy, file=sys.stderr)\nsys.exit(rc)"
)


def run(args: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", DOCTOR_IN_PROCESS, *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def rows_of(out: str) -> dict[str, dict[str, str]]:
    return {r["name"]: r for r in map(json.loads, out.splitlines())}


def test_doctor_on_a_broken_set_up_names_each_problem_and_its_fix(bus_env: BusEnv, tmp_path: Path) -> None:
    bus_env.set_sections(
        translate={"model": str(tmp_path / "nowhere.gguf")},
        synthesize={"model_dir": str(tmp_path / "no-voice")},
    )
    port = int(bus_env.config.endpoints.bind["translate"].rsplit(":", 1)[1])
    stranger = socket.socket()
    stranger.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    stranger.bind(("127.0.0.1", port))
    stranger.listen(1)  # a program that is not ours sits on translate's port
    bus_env.data_dir.mkdir()
    bus_env.data_dir.chmod(0o755)  # as an older version left it: other accounts can enter
    try:
        r = run(["doctor", "--json", "--quiet"], bus_env.env())
    finally:
        stranger.close()
    assert r.returncode == 1, r.stderr
    rows = rows_of(r.stdout)
    assert rows["translator model"]["status"] == "error"
    assert "nowhere.gguf" in rows["translator model"]["detail"]
    assert "[translate] model" in rows["translator model"]["fix"]
    assert rows["voice model"]["status"] == "error" and "no-voice" in rows["voice model"]["detail"]
    taken = rows[f"port {port}"]
    assert taken["status"] == "error" and "translate endpoint" in taken["detail"]
    assert "[endpoints] translate" in taken["fix"] and "STREAM_TTS_ENDPOINT_TRANSLATE" in taken["fix"]
    assert rows["ports"]["status"] == "error"
    assert rows["pipeline"]["status"] == "warning" and rows["pipeline"]["fix"] == "stream-tts up"
    private = rows["private files"]
    assert private["status"] == "warning" and "mode 0755" in private["detail"], private
    assert private["fix"].startswith(f"chmod 700 {bus_env.data_dir.resolve()}"), private
    assert (bus_env.data_dir.stat().st_mode & 0o777) == 0o755  # the doctor looks; it changes nothing
    assert rows["private bus"]["status"] == "warning"  # this test's ports: TCP on loopback, no CURVE
    assert "any account on this machine can connect" in rows["private bus"]["detail"]
    assert rows["python"]["status"] == "ok" and rows["packages"]["status"] == "ok"
    assert rows["llama.cpp"]["status"] in ("ok", "warning")  # probed in a subprocess, imported fine
    assert "HEAVY []" in r.stderr
    assert "E doctor: 4 error(s)" in r.stderr


def test_doctor_table_shows_fixes_with_their_brackets(bus_env: BusEnv, tmp_path: Path) -> None:
    bus_env.set_sections(
        translate={"model": str(tmp_path / "x.gguf")}, synthesize={"model_dir": str(tmp_path)}
    )
    r = run(["doctor", "--quiet"], bus_env.env())
    assert r.returncode == 1
    assert "translator model" in r.stdout and "[translate] model" in r.stdout  # not eaten as markup
    assert "error" in r.stdout and "fix" in r.stdout


@pytest.mark.skipif(
    translator().local_path(WEIGHTS_DIR).exists(), reason="real weights are installed: nothing to fetch"
)
def test_run_on_a_machine_that_cannot_download_stops_at_fetch_with_one_message(bus_env: BusEnv) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    env = {
        **bus_env.env(),
        "HF_ENDPOINT": f"http://127.0.0.1:{s.getsockname()[1]}",
        "HF_HOME": str(bus_env.root),
    }
    s.close()
    t0 = time.monotonic()
    r = run(["run", "--yes"], env, timeout=60)
    assert r.returncode == 3, r.stderr
    assert time.monotonic() - t0 < 20
    assert "[1/4] models" in r.stderr and "[2/4]" not in r.stderr
    assert r.stderr.count("cannot reach the model hub") == 1
    assert "stream-tts up --tiny" in r.stderr and "Next:" in r.stderr
    assert str(translator().local_path(WEIGHTS_DIR)) in r.stderr


@pytest.mark.slow
def test_run_tiny_brings_the_pipeline_up_speaks_the_greeting_and_doctor_finds_it_healthy(
    bus_env: BusEnv,
) -> None:
    # this 2-core machine is shared: give each stage room (the defaults suit a GPU machine)
    bus_env.set_sections(ingest={"deadline_base_s": 300.0}, synthesize={"deadline_s": 240.0})
    env = bus_env.env()
    data = ["--config", str(bus_env.config_path), "--data-dir", str(bus_env.data_dir)]
    try:
        r = run(["run", "--tiny", "--quiet", "--timeout", "240", *data], env, timeout=420)
        assert r.returncode == 0, r.stderr[-3000:]
        for n in range(1, 5):
            assert f"[{n}/4]" in r.stderr
        assert "greeting played" in r.stderr and "Next:" in r.stderr
        assert list((bus_env.data_dir / "wav").rglob("*.wav"))  # no sound device here: a WAV
        doc = run(["doctor", "--tiny", "--json", "--quiet", *data], env)
        rows = rows_of(doc.stdout)
        assert doc.returncode == 0, doc.stdout
        assert rows["pipeline"]["status"] == "ok" and "supervisord running" in rows["pipeline"]["detail"]
        assert rows["ports"]["status"] == "ok" and "free" not in rows["ports"]["detail"]  # all ours
        assert "(translate)" in rows["ports"]["detail"] and "(tap)" in rows["ports"]["detail"]
        assert rows["translator model"]["status"] == "ok" and rows["voice model"]["status"] == "ok"
        assert rows["private files"]["status"] == "ok", rows["private files"]  # 0700, files 0600
        assert "HEAVY []" in doc.stderr
    finally:
        down = subprocess.run(
            [sys.executable, "-m", "stream_tts.cli", "down", *data],
            env=env,
            cwd=REPO,
            capture_output=True,
            timeout=60,
        )
    assert down.returncode == 0
    after = run(["doctor", "--json", "--quiet", "--load-timeout", "1", *data], env)
    assert rows_of(after.stdout)["pipeline"]["status"] == "warning"  # down means down


def test_doctor_says_when_no_voice_can_be_used_and_which_one_will_be(
    bus_env: BusEnv, tmp_path: Path, tiny_models: tuple[Path, Path]
) -> None:
    from tests.test_voices import speakerless, write_default_prompt

    model = speakerless(tiny_models[1], tmp_path / "model")  # as the released CosyVoice2-0.5B
    bus_env.set_sections(synthesize={"model_dir": str(model)})
    r = run(["doctor", "--json", "--quiet"], bus_env.env())
    rows = rows_of(r.stdout)
    assert r.returncode == 1
    assert rows["voice model"]["status"] == "ok"  # the model loads; it just has nobody to speak with
    voice = rows["voice"]
    assert voice["status"] == "error" and "no voice given" in voice["detail"], voice
    assert "stream-tts models fetch" in voice["fix"] and "stream-tts voices add" in voice["fix"]
    write_default_prompt(model)  # what `stream-tts models fetch` brings
    rows = rows_of(run(["doctor", "--json", "--quiet"], bus_env.env()).stdout)
    assert rows["voice"]["status"] == "ok"
    assert "default: cloned (cross-lingual) from" in rows["voice"]["detail"]
    assert not (bus_env.data_dir / "voices").exists()  # the doctor looks; it makes nothing
    assert "HEAVY []" in r.stderr

"""The install path a user takes (README: `make demo` -> scripts/bootstrap -> pip with the lock) works off this
machine: no local version tags in the locks, MMCOMPRESS_TORCH_INDEX reaches pip, and the lock is what scripts/lock
makes from .venv. Fast: no network, no installs (fake `.venv/bin/python`s stand in for pip where one is run)."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT

LOCKS = [ROOT / "requirements" / "constraints.txt", ROOT / "requirements" / "constraints-transformers4.txt"]
PIN = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>[^\s;]+)$")
INDEX = "https://example.invalid/whl/cpu"


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = PIN.match(line)
        assert m, f"{path.name}: {line!r} is not name==version"
        pins[m["name"].lower().replace("_", "-")] = m["version"]
    return pins


def _repo_copy(tmp_path: Path) -> Path:
    """What bootstrap and lock read (scripts/, pyproject.toml, requirements/), without .venv."""
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copytree(ROOT / "scripts", repo / "scripts")
    shutil.copytree(ROOT / "requirements", repo / "requirements")
    shutil.copy2(ROOT / "pyproject.toml", repo / "pyproject.toml")
    return repo


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): (p.read_bytes() if p.is_file() else b"<dir>") for p in path.rglob("*")}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MMCOMPRESS_TORCH_INDEX"}
    env.update(PIP_NO_INDEX="1", PYTHON="/nonexistent/python3")  # if anything tried to create or install: it fails
    env.update(extra)
    return env


def _fake_python(repo: Path, body: str) -> Path:
    """`.venv/bin/python` as a shell script (so bootstrap finds a venv and lock a pip, and nothing is installed)."""
    py = repo / ".venv" / "bin" / "python"
    py.parent.mkdir(parents=True)
    py.write_text("#!/bin/sh\n" + body)
    py.chmod(py.stat().st_mode | stat.S_IXUSR)
    return py


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.name)
def test_locks_pin_public_versions_only(lock):
    """A local version tag (2.13.0+cpu) resolves only where an index carries that build; PyPI has none, so the
    README's first command would fail. `torch==2.13.0` still takes 2.13.0+cpu where an index offers it."""
    pins = _pins(lock)
    assert "torch" in pins and len(pins) > 20
    tagged = {name: v for name, v in pins.items() if "+" in v}
    assert not tagged, f"{lock.name}: local version tags {tagged}"


def test_print_pip_command_passes_the_torch_index_and_creates_nothing(tmp_path):
    repo = _repo_copy(tmp_path)
    before = _tree(repo)
    runs = {}
    for key, env in [("index", _env(MMCOMPRESS_TORCH_INDEX=INDEX)), ("plain", _env())]:
        r = subprocess.run([str(repo / "scripts" / "bootstrap"), "--print-pip-command"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stderr == ""
        assert len(r.stdout.splitlines()) == 1, r.stdout
        runs[key] = r.stdout.strip()

    index = runs["index"]
    assert f"--extra-index-url {INDEX}" in index
    assert "-c requirements/constraints.txt" in index
    words = shlex.split(index)  # one valid line of shell words
    assert words[:4] == [".venv/bin/python", "-m", "pip", "install"]
    assert words[words.index("--extra-index-url") + 1] == INDEX
    assert {"--upgrade", "torch", ".[test]"} <= set(words)  # an installed PyPI torch is replaced by the index's build

    plain = runs["plain"]
    assert "--extra-index-url" not in plain and "--upgrade" not in plain
    assert "-c requirements/constraints.txt" in plain
    assert shlex.split(plain)[-2:] == ["-e", ".[test]"]

    assert not (repo / ".venv").exists()
    assert _tree(repo) == before


def test_print_pip_command_quotes_an_index_url_for_the_shell(tmp_path):
    url = "https://example.invalid/it's a dir/cpu"
    r = subprocess.run([str(ROOT / "scripts" / "bootstrap"), "--print-pip-command"], cwd=tmp_path,
                       env=_env(MMCOMPRESS_TORCH_INDEX=url), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    words = shlex.split(r.stdout)
    assert words[words.index("--extra-index-url") + 1] == url


def test_bootstrap_reruns_pip_only_when_the_index_changes(tmp_path):
    """Idempotent, and the stamp covers MMCOMPRESS_TORCH_INDEX: setting it reinstalls, with the index on pip's
    command line; the same setting again is a no-op."""
    repo = _repo_copy(tmp_path)
    log = tmp_path / "pip.log"
    _fake_python(repo, f'echo "$*" >> "{log}"\n')

    def bootstrap(**env: str) -> list[str]:
        r = subprocess.run([str(repo / "scripts" / "bootstrap")], env=_env(**env), capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout == ""  # messages go to stderr
        return log.read_text().splitlines() if log.exists() else []

    first = bootstrap()
    assert len(first) == 1 and "-c requirements/constraints.txt" in first[0] and "--extra-index-url" not in first[0]
    assert bootstrap() == first
    with_index = bootstrap(MMCOMPRESS_TORCH_INDEX=INDEX)
    assert len(with_index) == 2 and f"--extra-index-url {INDEX}" in with_index[1]
    assert bootstrap(MMCOMPRESS_TORCH_INDEX=INDEX) == with_index
    (repo / "requirements" / "constraints.txt").write_text("# changed\n")
    assert len(bootstrap(MMCOMPRESS_TORCH_INDEX=INDEX)) == 3


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.name)
def test_lock_header_names_scripts_that_exist(lock):
    header = "\n".join(line for line in lock.read_text().splitlines() if line.startswith("#"))
    named = re.findall(r"\bscripts/[A-Za-z0-9_.-]*[A-Za-z0-9_]", header)
    assert named, f"{lock.name}'s header names no script that makes or uses it"
    for script in named:
        path = ROOT / script
        assert path.is_file() and os.access(path, os.X_OK), f"{lock.name}'s header names {script}: not an executable"


def test_scripts_lock_strips_local_tags_drops_mmcompress_and_sorts(tmp_path):
    repo = _repo_copy(tmp_path)
    freeze = tmp_path / "freeze.txt"
    freeze.write_text("Zeta==1.0\n# Editable Git install with no remote (mmcompress==0.1.0)\n-e /somewhere/main\n"
                      "alpha_beta==2.0\ntorch==2.13.0+cu128\nonnx==1.2\nonnx-ir==0.1\nJinja2==3.1.6\n")
    _fake_python(repo, f'[ "$1 $2 $3" = "-m pip freeze" ] && cat "{freeze}"\n')
    r = subprocess.run([str(repo / "scripts" / "lock"), "--stdout"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    body = [line for line in lines if not line.startswith("#")]
    assert lines[0].startswith("#") and "scripts/lock" in lines[0]
    assert body == ["alpha_beta==2.0", "Jinja2==3.1.6", "onnx-ir==0.1", "onnx==1.2", "torch==2.13.0", "Zeta==1.0"]
    assert _tree(repo / "requirements") == _tree(ROOT / "requirements")  # --stdout writes nothing

    freeze.write_text("alpha==1\nbeta @ file:///wheels/beta-1.0-py3-none-any.whl\n")
    bad = subprocess.run([str(repo / "scripts" / "lock"), "--stdout"], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "beta @ file://" in bad.stderr


def test_committed_lock_is_what_scripts_lock_makes_from_the_venv():
    if not (ROOT / ".venv" / "bin" / "python").is_file():
        pytest.skip("no .venv in the checkout (make test / scripts/bootstrap creates it first)")
    r = subprocess.run([str(ROOT / "scripts" / "lock"), "--stdout"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    committed = (ROOT / "requirements" / "constraints.txt").read_text()
    cuda = [line for line in r.stdout.splitlines() if re.match(r"(nvidia-|triton==|cuda-)", line, re.I)]
    if cuda and not any(line in committed.splitlines() for line in cuda):
        pytest.skip(f".venv holds PyPI's CUDA torch build ({cuda[0]}, ...); the lock describes the CPU install "
                    "(MMCOMPRESS_TORCH_INDEX=https://download.pytorch.org/whl/cpu)")
    if r.stdout != committed:
        import difflib

        diff = "".join(difflib.unified_diff(committed.splitlines(True), r.stdout.splitlines(True),
                                            "requirements/constraints.txt", "scripts/lock --stdout"))
        pytest.fail(f"the lock differs from .venv; run scripts/lock if .venv is what should be locked:\n{diff}")

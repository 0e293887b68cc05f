"""A regular (non-editable) install: the presets, the zoo and the command line all work from
site-packages, with the working directory outside the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mbrnn.data import DATA_ENV_VAR, data_root

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_is_listed_in_pyproject() -> None:
    """pyproject lists the packages (mbrnn.zoo is the top-level models/ folder): a package
    left out would be missing from every regular install."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "mbrnn").rglob("__init__.py")}
    assert set(setuptools["packages"]) == found | {"mbrnn.zoo"}
    assert setuptools["package-dir"] == {"mbrnn.zoo": "models"}
    assert (ROOT / "models" / "__init__.py").is_file()


def _run(cmd: list[str | Path], *, cwd: Path, env: dict[str, str],
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.mark.slow
def test_a_regular_install_trains_and_samples_outside_the_checkout(tmp_path: Path) -> None:
    data = data_root()
    if not (data / "tinyshakespeare").is_dir():
        pytest.skip(f"the shared data folder {data} has no tinyshakespeare/; set {DATA_ENV_VAR}")
    # A copy of what an sdist holds, so that the build leaves no build/ in the checkout.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("mbrnn", "models"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    # A fresh venv that sees this interpreter's site-packages (torch and the rest) through a
    # .pth of plain paths: their own .pth files, this checkout's editable finder among them,
    # are not processed, so `import mbrnn` can only find the copy installed below.
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update({DATA_ENV_VAR: str(data), "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                "PYTHONDONTWRITEBYTECODE": "1"})
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path, env=env)
    python = venv / "bin" / "python"
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        cwd=tmp_path, env=env).stdout.strip())
    outer = [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages")
             and Path(p).is_dir()]
    (purelib / "outer-site-packages.pth").write_text("".join(f"{p}\n" for p in outer))
    _run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
          "--no-index", "--no-cache-dir", "--ignore-installed", src], cwd=tmp_path, env=env,
         timeout=300)

    work = tmp_path / "elsewhere"  # outside the checkout and the copy
    work.mkdir()
    where = _run([python, "-c", "import mbrnn, mbrnn.hub, mbrnn.training.config as c; "
                  "print(mbrnn.__file__); print(mbrnn.hub.ZOO_DIR); print(c._presets())"],
                 cwd=work, env=env).stdout.split()
    assert all(Path(p).is_relative_to(purelib) for p in where), where
    assert not (purelib / "mbrnn" / "train.py").exists()

    out = work / "run"
    proc = _run([venv / "bin" / "mbrnn", "train", "--config=tiny", "--max-steps=2",
                 "--progress=false", f"--out={out}"], cwd=work, env=env)
    assert "step 2: train" in proc.stderr
    assert (out / "checkpoint.pt").is_file() and (out / "model" / "model.safetensors").is_file()

    proc = _run([venv / "bin" / "mbrnn", "sample", "--model", "shakespeare-char-lstm",
                 "--prompt", "ROMEO:", "--max-new-tokens", "20"], cwd=work, env=env)
    assert proc.stdout.startswith("ROMEO:") and len(proc.stdout) == len("ROMEO:") + 20 + 1

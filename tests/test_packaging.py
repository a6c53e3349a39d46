"""`pip install .` installs one import package, `agentwatch`, and the `agentwatch` command, and the README's
commands work from that install (a wheel in a fresh virtual environment, run outside the repository)."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(out), str(ROOT)], check=True, capture_output=True, timeout=300)
    (found,) = out.glob("agentwatch-*.whl")
    return found


def test_the_wheel_holds_one_top_level_package_and_the_command(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    assert {name.split("/")[0] for name in names} == {"agentwatch", wheel.name.split("-py3")[0] + ".dist-info"}
    assert "agentwatch = agentwatch.app.cli:main" in scripts
    assert {"agentwatch/checks/base.py", "agentwatch/app/cli.py", "agentwatch/dashboards/app.py",
            "agentwatch/schemas/json/incident.v1.schema.json"} <= set(names)


def test_the_readme_commands_work_from_an_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; "
                                "print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # The dependencies come from this environment's site-packages as a plain path: its .pth files (among them
    # the editable install's import hook) are not processed there, so only the wheel provides agentwatch.
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet",
                    "--no-deps", "--no-index", str(wheel)], check=True, capture_output=True, timeout=300)
    added = {p.name for p in site.iterdir()} - {"dependencies.pth", "__pycache__"}
    assert added == {"agentwatch", wheel.name.split("-py3")[0] + ".dist-info"}
    assert (venv / "bin" / "agentwatch").exists()
    run = subprocess.run([str(ROOT / "scripts" / "smoke-run"), str(venv / "bin")], capture_output=True, text=True,
                         timeout=900, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "smoke run passed" in run.stdout


def test_every_benchmark_starts_and_make_bench_runs_each() -> None:
    scripts = sorted(ROOT.glob("bench/*.py"))
    makefile = (ROOT / "Makefile").read_text()
    for script in scripts:
        assert f"bench/{script.name}" in makefile, f"make bench does not run {script.name}"
        started = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                                 timeout=120, cwd=ROOT)
        assert started.returncode == 0, f"{script.name} --help: {started.stderr[-2000:]}"
        assert "usage:" in started.stdout, script.name

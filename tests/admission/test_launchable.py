"""Issue 8: admission is closed. A program that cannot be executed, a dataset that is not
data, and environment names that change how programs load are refused at submit."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from slicebox.spec import SpecError, parse_spec
from slicebox.store import admission

from .helpers import GOOD, Submitter


@pytest.fixture()
def sub(tmp_path: Path) -> Submitter:
    return Submitter(tmp_path)


def _script(path: Path, text: str, mode: int = 0o755) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


# ---- the program ---------------------------------------------------------------------


def test_a_program_without_execute_permission(sub: Submitter, tmp_path: Path) -> None:
    _script(tmp_path / "run.sh", "#!/bin/sh\nexit 0\n", mode=0o644)
    message = sub.reject("name: a\ncommand: [./run.sh]\n")
    assert "command: program './run.sh'" in message and "not executable" in message


def test_a_folder_as_the_program(sub: Submitter, tmp_path: Path) -> None:
    (tmp_path / "tool").mkdir()
    message = sub.reject("name: a\ncommand: [./tool]\n")
    assert "command: " in message and "a folder, not a program" in message


def test_a_script_without_a_shebang(sub: Submitter, tmp_path: Path) -> None:
    _script(tmp_path / "run", "echo hi\n")
    message = sub.reject("name: a\ncommand: [./run]\n")
    assert "command: " in message and "neither a binary nor a script starting with #!" in message


def test_a_script_whose_interpreter_is_missing(sub: Submitter, tmp_path: Path) -> None:
    _script(tmp_path / "run", "#!/nonexistent/python9\nprint(1)\n")
    message = sub.reject("name: a\ncommand: [./run]\n")
    assert "interpreter '/nonexistent/python9'" in message and "does not exist" in message


def test_a_fifo_as_the_program(sub: Submitter, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "run")
    os.chmod(tmp_path / "run", 0o755)
    assert "named pipe (FIFO), not a program" in sub.reject("name: a\ncommand: [./run]\n")


def test_path_lookup_skips_what_execvp_skips(sub: Submitter, tmp_path: Path) -> None:
    # A non-executable file of the same name earlier on PATH does not hide a good one.
    (tmp_path / "bin1").mkdir()
    (tmp_path / "bin2").mkdir()
    _script(tmp_path / "bin1" / "tool", "#!/bin/sh\n", mode=0o644)
    good = _script(tmp_path / "bin2" / "tool", "#!/bin/sh\nexit 0\n")
    spec = parse_spec({"name": "a", "command": ["tool"],
                       "env": {"PATH": f"{tmp_path / 'bin1'}:{tmp_path / 'bin2'}"}})
    admitted = admission.admit(spec, cwd=tmp_path, env_allow={"PATH"})
    assert admitted.program == str(good)


def test_executable_programs_are_accepted(sub: Submitter, tmp_path: Path) -> None:
    _script(tmp_path / "run.sh", "#!/bin/sh\nexit 0\n")
    true = shutil.which("true")
    assert true is not None
    for command in (["./run.sh"], ["true"], [true], ["python3", "train.py"], ["python"]):
        spec = parse_spec({"name": "a", "command": command})
        assert os.access(admission.admit(spec, cwd=tmp_path).program, os.X_OK)


# ---- the dataset ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/dev/zero", "/proc", "/sys", "/", "/proc/self/environ",
                                  "/dev/shm/../zero"])
def test_a_dataset_that_is_not_data(sub: Submitter, path: str) -> None:
    message = sub.reject(GOOD + f"dataset: {{path: {path}}}\n")
    assert "dataset.path: " in message


def test_dev_zero_with_a_declared_size_of_zero(sub: Submitter, tmp_path: Path) -> None:
    (tmp_path / "data").symlink_to("/dev/zero")
    message = sub.reject(GOOD + "dataset: {path: data, size_gib: 0}\n")
    assert "dataset.path: /dev/zero is not data" in message


def test_dev_zero_inside_a_dataset_folder(sub: Submitter, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.bin").write_bytes(b"x" * 10)
    (tmp_path / "data" / "z.bin").symlink_to("/dev/zero")
    message = sub.reject(GOOD + "dataset: {path: data, size_gib: 0}\n")
    assert "dataset.path: " in message and "z.bin leads to /dev/zero" in message


def test_a_link_to_the_root_inside_a_dataset_folder(sub: Submitter, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "everything").symlink_to("/")
    message = sub.reject(GOOD + "dataset: {path: data}\n")
    assert "dataset.path: " in message and "everything leads to /;" in message


def test_a_fifo_inside_a_dataset_folder(sub: Submitter, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    os.mkfifo(tmp_path / "data" / "pipe")
    message = sub.reject(GOOD + "dataset: {path: data}\n")
    assert "dataset.path: " in message and "named pipe" in message


def test_the_real_size_is_measured_not_taken_from_the_spec(sub: Submitter, tmp_path: Path
                                                          ) -> None:
    (tmp_path / "data" / "sub").mkdir(parents=True)
    (tmp_path / "data" / "a.bin").write_bytes(b"x" * 3000)
    (tmp_path / "data" / "sub" / "b.bin").write_bytes(b"x" * 1000)
    (tmp_path / "other.bin").write_bytes(b"y" * 500)
    (tmp_path / "data" / "link.bin").symlink_to(tmp_path / "other.bin")  # copied: counted
    job_id = sub.submit(sub.write(GOOD + "dataset: {path: data, size_gib: 0}\n"))
    job = sub.store.job(job_id)
    assert job.dataset_size_gib == pytest.approx(4500 / (1 << 30))
    assert job.spec.dataset is not None and job.spec.dataset.path == str(tmp_path / "data")


# ---- the environment -----------------------------------------------------------------


LOADER_NAMES = ["LD_PRELOAD", "LD_AUDIT", "LD_LIBRARY_PATH", "PYTHONPATH", "PYTHONHOME",
                "PYTHONSTARTUP", "PATH"]


@pytest.mark.parametrize("name", LOADER_NAMES)
def test_names_that_change_how_programs_load_are_refused(sub: Submitter, name: str) -> None:
    message = sub.reject(GOOD + f"env: {{{name}: /tmp/evil}}\n")
    assert f"env.{name}: changes how programs load" in message


@pytest.mark.parametrize("name", LOADER_NAMES)
def test_the_pool_allow_list_permits_a_loader_name(sub: Submitter, name: str) -> None:
    value = os.environ.get("PATH", "/usr/bin:/bin") if name == "PATH" else "/tmp/x"
    path = sub.write(GOOD + f"env: {{{name}: '{value}'}}\n")
    assert sub.submit(path, env_allow=frozenset({name}))
    message = sub.reject(path, env_allow=frozenset({"SOMETHING_ELSE"}))
    assert f"env.{name}" in message


def test_harmless_python_settings_are_allowed() -> None:
    assert not admission.loads_code("PYTHONHASHSEED")
    assert not admission.loads_code("PYTHONUNBUFFERED")
    assert admission.loads_code("PYTHONWARNINGS")  # a warning category is a module it imports
    assert admission.loads_code("LD_BIND_NOW") and admission.loads_code("BASH_ENV")
    assert not admission.loads_code("OMP_NUM_THREADS")


def test_a_spec_error_names_the_field_for_the_api_too(tmp_path: Path) -> None:
    spec = parse_spec({"name": "a", "command": ["python3"], "env": {"LD_PRELOAD": "x.so"}})
    with pytest.raises(SpecError, match="job spec: env.LD_PRELOAD"):
        admission.admit(spec, cwd=tmp_path)


EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*jobs/*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_the_example_job_files_are_admitted(path: Path, tmp_path: Path) -> None:
    from slicebox.spec import load_spec

    # Submitted from a root like the repository's, with the demo's generated dataset.
    (tmp_path / "examples" / "data").mkdir(parents=True)
    (tmp_path / "examples" / "data" / "clicks.npz").write_bytes(b"\0" * 1024)
    admitted = admission.admit(load_spec(path), cwd=tmp_path, source=str(path))
    assert os.access(admitted.program, os.X_OK)

"""Issue 8, fuzzing: job files that crashed, hung or leaked at submit. Each is refused
with one line that names the file and the reason, and queues nothing."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from .helpers import GOOD, Submitter, run_isolated


@pytest.fixture()
def sub(tmp_path: Path) -> Submitter:
    return Submitter(tmp_path)


def test_symlink_loop_as_the_job_file(sub: Submitter, tmp_path: Path) -> None:
    (tmp_path / "a.yaml").symlink_to(tmp_path / "b.yaml")
    (tmp_path / "b.yaml").symlink_to(tmp_path / "a.yaml")
    message = sub.reject(tmp_path / "a.yaml")
    assert "a.yaml: cannot read the file" in message and "symbolic links" in message


@pytest.mark.parametrize("field", ["workdir", "dataset"])
def test_symlink_loop_in_a_path_field(sub: Submitter, tmp_path: Path, field: str) -> None:
    (tmp_path / "x").symlink_to(tmp_path / "y")
    (tmp_path / "y").symlink_to(tmp_path / "x")
    body = "workdir: x\n" if field == "workdir" else "dataset: {path: x}\n"
    message = sub.reject(GOOD + body)
    assert f"{field}" in message and "symbolic links" in message


def test_a_folder_that_contains_itself_through_a_symlink(sub: Submitter, tmp_path: Path
                                                         ) -> None:
    (tmp_path / "data" / "sub").mkdir(parents=True)
    (tmp_path / "data" / "sub" / "up").symlink_to(tmp_path / "data")
    message = sub.reject(GOOD + "dataset: {path: data}\n")
    assert "dataset.path: " in message and "contains itself" in message


@pytest.mark.parametrize("body", ["workdir: {long}\n", "dataset: {{path: {long}}}\n",
                                  "checkpoint: {{path: /tmp/{long}}}\n"])
def test_ten_thousand_character_path_component(sub: Submitter, body: str) -> None:
    message = sub.reject(GOOD + body.format(long="x" * 10_000))
    assert "10000-byte name" in message
    assert len(message) < 1000  # the name is not printed back in full


def test_ten_thousand_character_job_file_name(sub: Submitter, tmp_path: Path) -> None:
    message = sub.reject(tmp_path / ("j" * 10_000))
    assert "cannot read the file: File name too long" in message and len(message) < 1000


@pytest.mark.parametrize("name", ["job\x00.yaml", "job\ud800.yaml"])
def test_nul_or_surrogate_in_the_job_file_name(sub: Submitter, tmp_path: Path, name: str
                                               ) -> None:
    message = sub.reject(Path(str(tmp_path) + "/" + name))
    assert "NUL byte or an unpaired surrogate" in message
    message.encode("utf-8")  # printable: the surrogate is escaped, not echoed


def test_fifo_job_file_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "job.yaml"
    os.mkfifo(fifo)
    done = run_isolated(textwrap.dedent(f"""
        from slicebox.spec import SpecError, load_spec
        try:
            load_spec({str(fifo)!r})
        except SpecError as exc:
            print(exc)
    """), timeout=20)
    assert "named pipe (FIFO), not a regular file" in done.stdout, done.stderr


def test_job_file_linked_to_dev_zero_is_refused_without_reading(tmp_path: Path) -> None:
    link = tmp_path / "job.yaml"
    link.symlink_to("/dev/zero")
    done = run_isolated(textwrap.dedent(f"""
        from slicebox.spec import SpecError, load_spec
        try:
            load_spec({str(link)!r})
        except SpecError as exc:
            print(exc)
    """), timeout=20, memory_bytes=1 << 30)
    assert "a character device, not a regular file" in done.stdout, done.stderr


def test_job_file_linked_to_proc_is_refused(sub: Submitter, tmp_path: Path) -> None:
    link = tmp_path / "job.yaml"
    link.symlink_to("/proc/self/environ")  # "regular", size 0, and secret
    assert "inside /proc" in sub.reject(link)


SHADOW_LINES = ["root:$6$Zq9wsalt$k2Jd8secrethash:19000:0:99999:7:::",
                "daemon:*:19000:0:99999:7:::", "alice:$y$j9T$otherhash:19000:0:99999:7:::"]


def test_secret_file_behind_a_symlink_is_not_echoed(sub: Submitter, tmp_path: Path) -> None:
    secret = tmp_path / "shadow"
    secret.write_text("\n".join(SHADOW_LINES) + "\n")
    secret.chmod(0o600)
    link = tmp_path / "job.yaml"
    link.symlink_to(secret)
    message = sub.reject(link)
    for line in SHADOW_LINES:
        assert line.split(":")[0] + ":" not in message and line.split(":")[1] not in message
    assert "unknown field" in message  # still says what is wrong


@pytest.mark.skipif(not os.access("/etc/shadow", os.R_OK), reason="/etc/shadow unreadable")
def test_etc_shadow_behind_a_symlink_is_not_echoed(sub: Submitter, tmp_path: Path) -> None:
    link = tmp_path / "job.yaml"
    link.symlink_to("/etc/shadow")
    message = sub.reject(link)
    for line in Path("/etc/shadow").read_text().splitlines():
        if line.strip():
            assert line.split(":")[0] + ":" not in message


@pytest.mark.parametrize("depth", [500, 600, 5000])
def test_deep_nesting_is_refused_before_parsing(sub: Submitter, depth: int) -> None:
    message = sub.reject(GOOD + "env: " + "[" * depth + "]" * depth + "\n")
    assert "nested more than 32 levels deep" in message or (
        "exceeded maximum nesting depth" in message)  # libyaml's own cap, at 1000


def test_deep_mapping_nesting_is_refused(sub: Submitter) -> None:
    message = sub.reject(GOOD + "env: " + "{a: " * 600 + "1" + "}" * 600 + "\n")
    assert "nested more than 32 levels deep" in message


def test_alias_bomb_is_refused(sub: Submitter) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 8)]
    message = sub.reject(GOOD + "\n".join(lines) + "\n")
    assert "more than 100000 values" in message


def test_duplicate_keys_are_an_error(sub: Submitter) -> None:
    message = sub.reject("name: first\nname: second\ncommand: [python3, train.py]\n")
    assert "line 2" in message and "the key 'name' is given twice" in message
    message = sub.reject(GOOD + "resources: {cpus: 1, cpus: 2}\n")
    assert "the key 'cpus' is given twice" in message


def test_yaml_errors_do_not_quote_the_file(sub: Submitter) -> None:
    message = sub.reject("name: a\ncommand: [x\nsecret-token-123: ]]]\n")
    assert "not valid YAML: line" in message and "secret-token-123" not in message


def test_a_good_file_is_still_queued(sub: Submitter) -> None:
    job_id = sub.submit(sub.write(GOOD + "resources: {cpus: 2, memory_gib: 1.5}\n"))
    assert sub.store.job(job_id).spec.resources.cpus == 2

"""The runner: statuses, time limits, durable results, resume and interruption, with tiny cases."""

from __future__ import annotations

import gc
import io
import json
import os
import platform
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.errors import EXIT_SKIPPED, HarnessInputError
from harness.results.reading import read_results
from harness.results.records import RESULTS_FILE, SCHEMA_VERSION
from harness.running import worker
from harness.running.runner import Case, CasesInterrupted, latest_case_status, run_cases
from harness.running.worker import STDERR_TAIL_LINES

WRITE_ONE = (
    "import json, sys; "
    f"json.dump([{{'schema': {SCHEMA_VERSION}, 'kind': 'timing', 'value': 42}}], open(sys.argv[1], 'w'))"
)


def py_case(case_id: str, code: str, timeout_s: float = 20.0) -> Case:
    """A case running `code` in a fresh Python; its sys.argv[1] is the path for its records."""
    return Case(case_id, (sys.executable, "-c", code, "{json}"), timeout_s, f"label {case_id}", 1.0)


def marking(marker: Path, code: str) -> str:
    """`code`, preceded by appending a line to `marker` (to count how often a case ran)."""
    return f"open({str(marker)!r}, 'a').write('ran\\n')\n{code}"


def results_of(run_dir: Path) -> list[dict]:
    found = read_results(run_dir / RESULTS_FILE)
    assert found.warnings == () and found.finished == len(found.records)
    return list(found.records)


def case_records(run_dir: Path) -> dict[str, dict]:
    return {r["case_id"]: r for r in results_of(run_dir) if r["kind"] == "case"}


def pid_alive(pid: int) -> bool:
    """Whether the process runs; a zombie (killed, not yet reaped by init) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def wait_dead(pid: int, within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_ok_case_writes_its_records_then_its_case_record(tmp_path):
    summary = run_cases([py_case("time/torch/mlp", "print('hello'); " + WRITE_ONE)], tmp_path,
                        resume=False)

    lines = results_of(tmp_path)
    assert [line["kind"] for line in lines] == ["timing", "case"]
    assert all(line["schema"] == SCHEMA_VERSION and line["case_id"] == "time/torch/mlp"
               for line in lines)
    assert lines[0]["value"] == 42
    end = lines[1]
    assert (end["status"], end["returncode"], end["error"]) == ("ok", 0, "")
    assert end["command"][-1] == "{json}" and end["elapsed_s"] > 0
    assert end["machine"]["host"] == platform.node() and end["machine"]["cores"] >= 1  # where it ran
    assert time.time() - 120 < end["started_at"] < end["ended_at"] <= time.time()
    assert (summary.ok, summary.failed, summary.timeout, summary.skipped) == (1, 0, 0, 0)
    log = (tmp_path / "logs" / "time__torch__mlp.log").read_text()
    assert "hello" in log


def test_postprocess_records_come_after_the_case_records_and_before_its_case_record(tmp_path):
    def postprocess(case, records):
        return [{"schema": 1, "kind": "comparison", "of": records[0]["value"], "from": case.case_id}]

    run_cases([py_case("c", WRITE_ONE)], tmp_path, resume=False, postprocess=postprocess)

    lines = results_of(tmp_path)
    assert [line["kind"] for line in lines] == ["timing", "comparison", "case"]
    assert lines[1] == {"schema": 1, "kind": "comparison", "of": 42, "from": "c", "case_id": "c",
                        "machine": platform.node()}


def test_env_is_added_to_the_inherited_environment(tmp_path):
    code = ("import json, os, sys; json.dump([{'schema': 1, 'kind': 'k', "
            "'flag': os.environ['XFW_FLAG'], 'path': os.environ['PATH']}], open(sys.argv[1], 'w'))")
    run_cases([py_case("c", code)], tmp_path, resume=False, env={"XFW_FLAG": "on"})

    record = results_of(tmp_path)[0]
    assert record["flag"] == "on" and record["path"] == os.environ["PATH"]


def test_nonzero_exit_is_failed_with_the_end_of_stderr_and_the_run_goes_on(tmp_path):
    code = ("import sys\nfor i in range(30): print(f'line {i}', file=sys.stderr)\n"
            "sys.exit('ValueError: bad layer')")
    summary = run_cases([py_case("bad", code), py_case("good", WRITE_ONE)], tmp_path, resume=False)

    ends = case_records(tmp_path)
    assert (ends["bad"]["status"], ends["bad"]["returncode"]) == ("failed", 1)
    error_lines = ends["bad"]["error"].splitlines()
    assert len(error_lines) == STDERR_TAIL_LINES
    assert error_lines[-1] == "ValueError: bad layer" and "line 29" in error_lines
    assert "line 5" not in error_lines
    assert ends["good"]["status"] == "ok"
    assert (summary.ok, summary.failed) == (1, 1)
    assert [r["kind"] for r in results_of(tmp_path) if r["case_id"] == "bad"] == ["case"]


@pytest.mark.parametrize("code, message", [
    ("pass", "did not write its records"),
    ("import sys; open(sys.argv[1], 'w').write('[{')", "not valid JSON"),
    ("import sys; open(sys.argv[1], 'w').write('{}')", "not a JSON array"),
    ("import sys; open(sys.argv[1], 'w').write('[{\"kind\": \"timing\"}]')", "schema and kind"),
])
def test_exit_zero_without_valid_records_is_failed(tmp_path, code, message):
    run_cases([py_case("c", code)], tmp_path, resume=False)

    lines = results_of(tmp_path)
    assert [line["kind"] for line in lines] == ["case"]
    assert lines[0]["status"] == "failed" and lines[0]["returncode"] == 0
    assert message in lines[0]["error"]


def test_a_command_that_cannot_start_is_failed(tmp_path):
    case = Case("c", (str(tmp_path / "no-such-program"), "{json}"), 5.0, "c", 1.0)
    summary = run_cases([case], tmp_path, resume=False)

    end = case_records(tmp_path)["c"]
    assert end["status"] == "failed" and "could not start" in end["error"]
    assert summary.failed == 1


def test_timeout_kills_the_whole_process_group(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(30)\n"
    )
    started = time.monotonic()
    summary = run_cases([py_case("slow", code, timeout_s=1.0), py_case("next", WRITE_ONE)],
                        tmp_path, resume=False)

    assert time.monotonic() - started < 25  # killed at its timeout: its 30 s sleep was not waited for
    ends = case_records(tmp_path)
    assert ends["slow"]["status"] == "timeout"
    assert ends["slow"]["error"] == "timed out after 1 s"
    assert ends["next"]["status"] == "ok"
    assert (summary.ok, summary.timeout) == (1, 1)
    assert wait_dead(int(pid_file.read_text()))


def test_processes_a_case_leaves_behind_are_killed(tmp_path):
    pid_file = tmp_path / "background.pid"
    code = (
        "import subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        + WRITE_ONE
    )
    run_cases([py_case("leaky", code)], tmp_path, resume=False)

    assert case_records(tmp_path)["leaky"]["status"] == "ok"
    assert wait_dead(int(pid_file.read_text()))


def test_timeout_falls_back_to_sigkill_when_sigterm_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setattr(worker, "KILL_GRACE_S", 0.5)
    code = ("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ready', flush=True)\ntime.sleep(30)\n")
    started = time.monotonic()
    run_cases([py_case("stubborn", code, timeout_s=1.0)], tmp_path, resume=False)

    assert time.monotonic() - started < 25  # SIGKILLed: its 30 s sleep was not waited for
    end = case_records(tmp_path)["stubborn"]
    assert end["status"] == "timeout" and end["returncode"] == -9


def test_stop_on_failure_stops_after_the_first_failure(tmp_path):
    cases = [py_case("a", "raise SystemExit(4)"), py_case("b", WRITE_ONE)]
    summary = run_cases(cases, tmp_path, resume=False, stop_on_failure=True)

    assert list(case_records(tmp_path)) == ["a"]
    assert (summary.ok, summary.failed) == (0, 1)


def test_resume_reruns_only_the_cases_that_are_not_ok(tmp_path):
    markers = {name: tmp_path / f"{name}.marks" for name in "abc"}
    run_dir = tmp_path / "run"
    first = [py_case("a", marking(markers["a"], WRITE_ONE)),
             py_case("b", marking(markers["b"], "raise SystemExit('broken')")),
             py_case("c", marking(markers["c"], WRITE_ONE))]
    run_cases(first, run_dir, resume=False)
    fixed = [first[0], py_case("b", marking(markers["b"], WRITE_ONE)), first[2]]

    summary = run_cases(fixed, run_dir, resume=True)

    runs = {name: len(path.read_text().splitlines()) for name, path in markers.items()}
    assert runs == {"a": 1, "b": 2, "c": 1}
    assert (summary.ok, summary.failed, summary.already_ok) == (1, 0, 2)
    assert latest_case_status(results_of(run_dir)) == {"a": "ok", "b": "ok", "c": "ok"}


def test_without_resume_a_folder_with_results_is_refused(tmp_path):
    run_cases([py_case("a", WRITE_ONE)], tmp_path, resume=False)

    with pytest.raises(HarnessInputError, match="--resume"):
        run_cases([py_case("a", WRITE_ONE)], tmp_path, resume=False)


def test_an_empty_results_file_is_not_a_previous_run(tmp_path):
    (tmp_path / RESULTS_FILE).write_text("")

    assert run_cases([py_case("a", WRITE_ONE)], tmp_path, resume=False).ok == 1


def test_resume_drops_an_unfinished_block_at_the_end_with_a_warning(tmp_path, capsys):
    marker = tmp_path / "a.marks"
    run_dir = tmp_path / "run"
    case_a = py_case("a", marking(marker, WRITE_ONE))
    run_cases([case_a], run_dir, resume=False)
    results = run_dir / RESULTS_FILE
    with open(results, "a") as handle:  # what a kill in the middle of case b's write leaves
        handle.write(json.dumps({"schema": 1, "kind": "timing", "case_id": "b"}) + "\n")
        handle.write('{"schema": 1, "kind": "ti')
    capsys.readouterr()

    summary = run_cases([case_a, py_case("b", WRITE_ONE)], run_dir, resume=True)

    assert "unfinished case" in capsys.readouterr().err
    assert len(marker.read_text().splitlines()) == 1
    assert (summary.ok, summary.already_ok) == (1, 1)
    lines = results_of(run_dir)  # fails on the truncated line if it was left in place
    assert [(r["case_id"], r["kind"]) for r in lines] == [
        ("a", "timing"), ("a", "case"), ("b", "timing"), ("b", "case")]


def test_read_results_ignores_a_truncated_last_line(tmp_path, capsys):
    run_cases([py_case("a", WRITE_ONE)], tmp_path, resume=False)
    results = tmp_path / RESULTS_FILE
    capsys.readouterr()
    with open(results, "ab") as handle:  # cut inside the two bytes of "é"
        handle.write('{"schema": 1, "kind": "case", "case_id": "b", "error": "é'.encode()[:-1])

    found = read_results(results)
    assert [r["kind"] for r in found.records] == ["timing", "case"]
    assert found.finished == 2 and "line 3 is incomplete" in found.warnings[0]


def test_read_results_does_not_warn_about_a_complete_file(tmp_path, capsys):
    run_cases([py_case("a", WRITE_ONE)], tmp_path, resume=False)
    results = tmp_path / RESULTS_FILE
    with open(results, "a") as handle:
        handle.write("\n")
    capsys.readouterr()

    found = read_results(results)
    assert [r["kind"] for r in found.records] == ["timing", "case"]
    assert found.warnings == ()


def test_bad_json_before_the_last_finished_case_is_an_input_error(tmp_path):
    run_cases([py_case("a", WRITE_ONE)], tmp_path, resume=False)
    results = tmp_path / RESULTS_FILE
    finished = results.read_text()
    results.write_text("not json\n" + finished)

    with pytest.raises(HarnessInputError, match="line 1"):
        run_cases([py_case("a", WRITE_ONE)], tmp_path, resume=True)


def test_interrupt_in_postprocess_keeps_finished_cases_and_writes_nothing_partial(tmp_path):
    def postprocess(case, records):
        if case.case_id == "b":
            raise KeyboardInterrupt
        return []

    cases = [py_case("a", WRITE_ONE), py_case("b", WRITE_ONE), py_case("c", WRITE_ONE)]
    with pytest.raises(KeyboardInterrupt) as raised:
        run_cases(cases, tmp_path, resume=False, postprocess=postprocess)

    assert isinstance(raised.value, CasesInterrupted)
    assert (raised.value.tally.ok, raised.value.tally.failed) == (1, 1)
    lines = results_of(tmp_path)
    assert [(r["case_id"], r["kind"]) for r in lines] == [("a", "timing"), ("a", "case"), ("b", "case")]
    assert (lines[-1]["status"], lines[-1]["error"]) == ("failed", "interrupted")


def test_ctrl_c_while_a_case_runs_kills_it_and_resume_reruns_it(tmp_path):
    pid_file = tmp_path / "child.pid"
    slow = (f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
            "time.sleep(30)\n")
    cases = [py_case("a", WRITE_ONE), py_case("b", slow)]

    def interrupt_once_b_runs():
        deadline = time.monotonic() + 10
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        if pid_file.exists():  # else the runner failed early: a stray SIGINT would stop pytest itself
            os.kill(os.getpid(), signal.SIGINT)

    # Once in CI, after the in-process backend tests, a simulated Ctrl-C (_thread.interrupt_main)
    # never reached the runner; it did in every run alone. A KeyboardInterrupt raised while the main
    # thread runs a finalizer is discarded, so earlier tests' garbage is collected first, and the
    # interrupt is a real SIGINT, as a terminal's Ctrl-C sends.
    gc.collect()
    # A process started in the background by a non-interactive shell (`cmd &`, as a CI script may
    # run pytest) inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler:
    # give this test the handler a terminal's Python has.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=interrupt_once_b_runs, daemon=True).start()
    started = time.monotonic()
    try:
        with pytest.raises(CasesInterrupted):
            run_cases(cases, tmp_path, resume=False)
    finally:
        signal.signal(signal.SIGINT, previous)

    assert time.monotonic() - started < 25  # killed: its 30 s sleep was not waited for
    assert wait_dead(int(pid_file.read_text()))
    assert latest_case_status(results_of(tmp_path)) == {"a": "ok", "b": "failed"}
    assert case_records(tmp_path)["b"]["error"] == "interrupted"

    summary = run_cases([cases[0], py_case("b", WRITE_ONE)], tmp_path, resume=True)
    assert (summary.ok, summary.already_ok) == (1, 1)


def test_plain_progress_prints_one_line_per_case(tmp_path, capsys):
    run_cases([py_case("x/one", WRITE_ONE), py_case("x/two", "raise SystemExit(1)")], tmp_path,
              resume=False)

    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("[1/2] x/one ... ok (") and lines[0].endswith(" s)")
    assert lines[1].startswith("[2/2] x/two ... failed (")


def test_progress_bar_on_a_terminal_shows_the_case_number_and_label(tmp_path, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    run_cases([py_case("x/one", "import time; time.sleep(0.3)\n" + WRITE_ONE)], tmp_path,
              resume=False)

    shown = terminal.getvalue()
    assert "case 1/1" in shown and "label x/one" in shown and "ETA" in shown
    assert "[1/1]" not in shown


def test_latest_case_status_keeps_the_last_case_record_of_each_case():
    records = [{"kind": "case", "case_id": "a", "status": "failed"},
               {"kind": "timing", "case_id": "a"},
               {"kind": "case", "case_id": "b", "status": "timeout"},
               {"kind": "case", "case_id": "a", "status": "ok"}]

    assert latest_case_status(records) == {"a": "ok", "b": "timeout"}


def test_repeated_case_ids_are_refused(tmp_path):
    with pytest.raises(ValueError, match="a"):
        run_cases([py_case("a", WRITE_ONE), py_case("a", WRITE_ONE)], tmp_path, resume=False)


def test_a_run_folder_can_be_locked_by_one_run_only(tmp_path):
    import multiprocessing

    from harness.running.runner import lock_run_dir

    def hold(folder, ready, release):
        with lock_run_dir(folder):
            ready.set()
            release.wait(10)

    ready, release = multiprocessing.Event(), multiprocessing.Event()
    holder = multiprocessing.Process(target=hold, args=(tmp_path, ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        with pytest.raises(HarnessInputError, match="another run is writing") as caught:
            with lock_run_dir(tmp_path):
                pass
        assert str(holder.pid) in str(caught.value)
    finally:
        release.set()
        holder.join(10)
    with lock_run_dir(tmp_path):  # free again once the holder is gone
        pass


def test_a_case_whose_backend_is_missing_is_recorded_as_skipped_with_its_reason(tmp_path):
    code = ("import sys; print('skipped: --backend x: not available: no x here', file=sys.stderr); "
            f"sys.exit({EXIT_SKIPPED})")

    summary = run_cases([py_case("time/x/mlp", code), py_case("good", WRITE_ONE)], tmp_path, resume=False)

    assert (summary.ok, summary.failed, summary.skipped) == (1, 0, 1)
    record = case_records(tmp_path)["time/x/mlp"]
    assert record["status"] == "skipped" and record["error"] == "skipped: --backend x: not available: no x here"

"""--executor ray on a real multi-node Ray cluster started on this machine (ray.cluster_utils.Cluster).

The cases are tiny Python commands (they sleep, write their records and say where they ran), so
what is tested is the executor: cases spread over the nodes, a timing (exclusive) case never
shares its node with another case, every case recorded exactly once, resume, Ctrl-C, and a node
killed mid-case. Skipped when the `ray` extra is not installed; `.ci/run` installs it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip(
    "ray", reason="the ray extra is not installed (pip install -c constraints-cpu.txt -e '.[ray]')")
from ray.cluster_utils import Cluster  # noqa: E402

from harness.errors import HarnessInputError  # noqa: E402
from harness.results.reading import read_results  # noqa: E402
from harness.results.records import RESULTS_FILE, SCHEMA_VERSION  # noqa: E402
from harness.running.ray_executor import NODE_RESOURCE, RayExecutor  # noqa: E402
from harness.running.runner import Case, CasesInterrupted, run_cases  # noqa: E402

pytestmark = pytest.mark.slow
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def sleeping_case(case_id: str, seconds: float, exclusive: bool, marker_dir: Path | None = None) -> Case:
    """A case that notes its start (and pid) in marker_dir, sleeps, then writes one record."""
    note = (f"open({str(marker_dir / case_id.replace('/', '_'))!r}, 'w').write(str(os.getpid()))\n"
            if marker_dir else "")
    code = (f"import json, os, sys, time\n{note}time.sleep({seconds})\n"
            f"json.dump([{{'schema': {SCHEMA_VERSION}, 'kind': 'note', 'case': {case_id!r}}}], open(sys.argv[1], 'w'))")
    return Case(case_id, (sys.executable, "-c", code, "{json}"), 120.0, case_id, seconds, exclusive=exclusive)


def results(run_dir: Path) -> list[dict]:
    found = read_results(run_dir / RESULTS_FILE)
    assert found.finished == len(found.records)
    return list(found.records)


def case_ends(run_dir: Path) -> list[dict]:
    return [r for r in results(run_dir) if r["kind"] == "case"]


@pytest.fixture(scope="module")
def cluster():
    """Two nodes of 2 CPUs, each declaring one harness_node: 2 CPUs so that packed cases could
    share a node, which makes 'a timing case never shares its node' a real test."""
    found = Cluster(initialize_head=True, connect=False,
                    head_node_args={"num_cpus": 2, "resources": {NODE_RESOURCE: 1}})
    found.add_node(num_cpus=2, resources={NODE_RESOURCE: 1})
    found.wait_for_nodes()
    yield found
    found.shutdown()


def test_cases_spread_over_nodes_and_timing_cases_never_share_a_node(cluster, tmp_path):
    cases = [sleeping_case(f"time/{i}", 1.5, exclusive=True) for i in range(4)]
    cases += [sleeping_case(f"study/{i}", 1.0, exclusive=False) for i in range(6)]
    tally = run_cases(cases, tmp_path, resume=False, executor=RayExecutor(cluster.address))

    assert (tally.ok, tally.failed) == (len(cases), 0)
    ends = case_ends(tmp_path)
    assert sorted(e["case_id"] for e in ends) == sorted(c.case_id for c in cases)  # each exactly once
    notes = [r for r in results(tmp_path) if r["kind"] == "note"]
    assert sorted(n["case"] for n in notes) == sorted(c.case_id for c in cases)
    nodes = {e["machine"]["ray_node_id"] for e in ends}
    assert len(nodes) == 2
    for end in ends:
        assert {"host", "cpu_model", "cores", "gpu", "frameworks"} <= set(end["machine"])
        assert end["started_at"] < end["ended_at"]
    for note in notes:  # every record names the machine its case ran on
        end = next(e for e in ends if e["case_id"] == note["case_id"])
        assert note["machine"].endswith(end["machine"]["ray_node_id"][:8])
    for timing in (e for e in ends if e["case_id"].startswith("time/")):
        beside = [e for e in ends if e is not timing and e["machine"]["ray_node_id"] == timing["machine"]["ray_node_id"]
                  and e["started_at"] < timing["ended_at"] and timing["started_at"] < e["ended_at"]]
        assert beside == [], f"{timing['case_id']} overlapped {[e['case_id'] for e in beside]} on its node"
    assert (tmp_path / "logs" / "time__0.log").read_text().startswith("$ ")


def test_resume_runs_only_what_did_not_finish(cluster, tmp_path):
    flag = tmp_path / "fixed"
    failing = Case("flaky", (sys.executable, "-c", (
        f"import json, os, sys\nif not os.path.exists({str(flag)!r}): sys.exit('not yet')\n"
        f"json.dump([{{'schema': {SCHEMA_VERSION}, 'kind': 'note'}}], open(sys.argv[1], 'w'))"), "{json}"),
        60.0, "flaky", 1.0, exclusive=False)
    run_dir = tmp_path / "run"
    cases = [sleeping_case("steady", 0.2, exclusive=True), failing]
    first = run_cases(cases, run_dir, resume=False, executor=RayExecutor(cluster.address))
    assert (first.ok, first.failed) == (1, 1)
    flag.write_text("")
    second = run_cases(cases, run_dir, resume=True, executor=RayExecutor(cluster.address))

    assert (second.ok, second.already_ok) == (1, 1)
    statuses = sorted((e["case_id"], e["status"]) for e in case_ends(run_dir))
    assert statuses == [("flaky", "failed"), ("flaky", "ok"), ("steady", "ok")]  # steady ran once
    assert "not yet" in next(e["error"] for e in case_ends(run_dir) if e["status"] == "failed")


def test_ctrl_c_cancels_pending_cases_and_keeps_finished_ones(cluster, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    cases = [sleeping_case("quick", 0.2, exclusive=True),
             *(sleeping_case(f"long/{i}", 60.0, exclusive=True, marker_dir=markers) for i in range(3))]

    def interrupt_after_first(case, records):
        deadline = time.monotonic() + 60  # let the long cases start, then press Ctrl-C
        while len(list(markers.iterdir())) < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        raise KeyboardInterrupt

    run_dir = tmp_path / "run"
    started = time.monotonic()
    with pytest.raises(CasesInterrupted) as caught:
        run_cases(cases, run_dir, resume=False, postprocess=interrupt_after_first,
                  executor=RayExecutor(cluster.address))
    assert time.monotonic() - started < 60  # the 60 s cases were not waited for
    ends = case_ends(run_dir)
    assert caught.value.tally.failed == 4  # the case being recorded and the three long ones
    assert {e["case_id"] for e in ends} == {c.case_id for c in cases}
    assert all(e["status"] == "failed" and e["error"] == "interrupted" for e in ends)
    for marker in markers.iterdir():  # the long cases that had started were killed
        pid = int(marker.read_text())
        deadline = time.monotonic() + 20
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]


def test_a_killed_node_loses_no_case(tmp_path):
    """A case whose node dies is run again on the other node (Ray's one retry); the other case
    and its records are untouched; each case is recorded once."""
    found = Cluster(initialize_head=True, connect=False,
                    head_node_args={"num_cpus": 1, "resources": {NODE_RESOURCE: 1}})
    doomed = found.add_node(num_cpus=1, resources={NODE_RESOURCE: 1})
    found.wait_for_nodes()
    markers = tmp_path / "markers"
    markers.mkdir()
    cases = [sleeping_case(f"time/{i}", 6.0, exclusive=True, marker_dir=markers) for i in range(2)]

    def kill_when_both_run():
        deadline = time.monotonic() + 60
        while len(list(markers.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        found.remove_node(doomed, allow_graceful=False)

    killer = threading.Thread(target=kill_when_both_run)
    killer.start()
    try:
        tally = run_cases(cases, tmp_path / "run", resume=False, executor=RayExecutor(found.address))
    finally:
        killer.join()
        found.shutdown()

    ends = case_ends(tmp_path / "run")
    assert sorted(e["case_id"] for e in ends) == ["time/0", "time/1"]
    assert tally.ok + tally.failed == 2
    for end in ends:
        assert end["status"] == "ok" or end["error"].startswith("Ray lost the case"), json.dumps(end)
    assert tally.ok == 2, [e["error"] for e in ends]  # the retry on the surviving node finished it
    assert len({e["machine"]["ray_node_id"] for e in ends}) == 1  # both finished on the surviving node


def test_a_cluster_without_the_node_resource_is_refused(tmp_path):
    bare = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": 1})
    try:
        with pytest.raises(HarnessInputError, match=NODE_RESOURCE):
            run_cases([sleeping_case("x", 0.1, exclusive=True)], tmp_path, resume=False,
                      executor=RayExecutor(bare.address))
    finally:
        bare.shutdown()


def test_an_unreachable_address_is_refused_at_once_before_the_run_folder_exists(tmp_path):
    """One line naming --ray-address (ray.init alone retries for ~20 s, printing a warning a
    second), and no run folder left behind."""
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "harness", "run", "--suite", "quick", "--executor", "ray",
                           "--ray-address", "127.0.0.1:9", "--out", str(out)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: --ray-address 127.0.0.1:9: no Ray cluster could be reached there")
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not out.exists()

"""The burst check's reading and verdict, against ``scontrol show job -o`` of a real job array
(fixtures/slurm: 16 tasks on c[1-3] of a local cluster, c3's /tmp a 64 KiB tmpfs)."""

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from pytest_hpcvalidate.probes import burst, slurm
from pytest_hpcvalidate.transport import CommandResult

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "slurm"
MIDWAY = (FIXTURES / "scontrol-show-job-array-burst-midway-22.05.txt").read_text()
ENDED = (FIXTURES / "scontrol-show-job-array-burst-c3-tmp-full-22.05.txt").read_text()
SUBMITTED = CommandResult("ctl", "sbatch", 0, "81\n", "", 0.1)


def _burst(text: str, count: int = 16, **more) -> burst.Burst:
    return burst.Burst(count, "--array=0-15", 81, SUBMITTED, burst.parse_tasks(text), elapsed_s=12.0,
                       pending_reason=burst.pending_reason(text), **more)


def test_tasks_of_a_real_array_midway_leave_out_the_pending_rest():
    tasks = burst.parse_tasks(MIDWAY)
    assert sorted(tasks) == list(range(12))  # 12-15 still pending, one record for the four
    assert "ArrayTaskId=12-15" in MIDWAY
    assert {tasks[t].nodes for t in (4, 5, 10, 11)} == {"c3"} and tasks[4].state == "FAILED"
    run = _burst(MIDWAY)
    assert not run.finished and len(run.ended) == 12


def test_a_node_that_fails_its_tasks_is_named_with_how_many_and_what_the_first_wrote():
    run = _burst(ENDED, errors={4: "hpcv-burst: cannot write 1 MiB to /tmp on c3"})
    assert run.finished and run.jobs_per_min == 80.0
    assert burst.first_failed_per_node(run) == {"c3": 4}
    assert burst.problems(run) == [
        "c3 failed 4 of the 4 tasks it ran (FAILED 1:0 ×4); task 4 wrote: hpcv-burst: cannot write 1 MiB to /tmp on c3"]


def test_tasks_that_had_not_ended_are_counted_with_their_states_and_reasons():
    run = _burst(MIDWAY)
    (c3, late) = burst.problems(run)
    assert c3.startswith("c3 failed 4 of the 4 tasks it ran")
    assert late == "4 of 16 tasks had not ended after 12 s (4 never started (reason Resources))"
    run.tasks[12] = slurm.JobInfo(99, "RUNNING", "0:0", "c1", "None", {"ArrayTaskId": "12"})
    run.tasks[13] = slurm.JobInfo(100, "RUNNING", "0:0", "c1", "None", {"ArrayTaskId": "13"})
    assert burst.problems(run)[1] == ("4 of 16 tasks had not ended after 12 s (2 never started (reason Resources), "
                                      "RUNNING 0:0 ×2: still on c1 ×2)")


def test_a_healthy_burst_has_no_problems():
    healthy = ENDED.replace("JobState=FAILED", "JobState=COMPLETED").replace("ExitCode=1:0", "ExitCode=0:0")
    run = _burst(healthy)
    assert run.finished and burst.problems(run) == []


def test_errors_read_back_are_split_by_task():
    text = "== 4\nhpcv-burst: cannot write 1 MiB\nto /tmp on c3\n== 7\ntail: cannot open 'x': No such file\n"
    assert burst._split_errors(text) == {4: "hpcv-burst: cannot write 1 MiB to /tmp on c3",
                                         7: "tail: cannot open 'x': No such file"}


@given(st.lists(st.tuples(st.sampled_from(["c1", "c2", "c3"]), st.sampled_from(["COMPLETED 0:0", "FAILED 1:0",
                                                                               "COMPLETED 2:0", "RUNNING 0:0"])),
                min_size=1, max_size=40))
def test_every_node_with_a_failed_task_is_named_once_and_only_those(outcomes):
    tasks = {i: slurm.JobInfo(i, s.split()[0], s.split()[1], node, "None", {"ArrayTaskId": str(i)})
             for i, (node, s) in enumerate(outcomes)}
    run = burst.Burst(len(outcomes), "", 1, SUBMITTED, tasks, elapsed_s=1.0)
    bad_nodes = sorted({node for node, s in outcomes if s in ("FAILED 1:0", "COMPLETED 2:0")})
    named = [p.split()[0] for p in burst.problems(run) if " failed " in p]
    assert named == bad_nodes
    assert run.finished == all(not s.startswith("RUNNING") for _, s in outcomes)


def test_tasks_cancelled_before_they_started_are_not_blamed_on_a_node():
    ended = burst.parse_tasks(ENDED)
    ended[15] = slurm.JobInfo(96, "CANCELLED", "0:0", "(null)", "Dependency", {"ArrayTaskId": "15"})
    ended[4] = ended[5] = ended[10] = ended[11] = ended[0]  # c3's failures repaired
    run = burst.Burst(16, "", 81, SUBMITTED, ended, elapsed_s=12.0)
    assert burst.problems(run) == ["1 task(s) ended before they ran on a node (CANCELLED 0:0 ×1; task 15: reason "
                                   "Dependency)"]


def test_why_tasks_not_yet_started_wait_is_the_reason_of_their_shared_record():
    assert burst.pending_reason(MIDWAY) == "Resources"  # recorded: the other tasks held every CPU
    down = MIDWAY.replace("JobState=PENDING Reason=Resources", "JobState=PENDING Reason=PartitionDown")
    assert burst.pending_reason(down) == "PartitionDown"
    assert burst.pending_reason(ENDED) == ""

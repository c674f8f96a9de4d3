"""Probe parsers against recorded real outputs (fixtures/) and hand-made edge cases."""

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_hpcvalidate.probes import isolation, mpi, network, slurm

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def test_scontrol_multiline_record_from_a_real_h100_node():
    nodes = slurm.parse_nodes((FIXTURES / "slurm/scontrol-show-node-h100.txt").read_text())
    vm = nodes["vm"]
    assert (vm.state, vm.cpus, vm.real_memory_mb) == ("IDLE", 16, 100000)
    assert vm.gres == {"gpu:h100": 1} and vm.gpu_count() == 1
    assert vm.usable and vm.partitions == ("gpu",)
    assert vm.raw["OS"].startswith("Linux 6.18.44")


@pytest.mark.parametrize(
    "state, usable, text",
    [
        ("IDLE", True, "IDLE"),
        ("MIXED", True, "MIXED"),
        ("IDLE+DRAIN", False, "IDLE+DRAIN"),
        ("DOWN*", False, "DOWN+NOT_RESPONDING"),
        ("IDLE*", False, "IDLE+NOT_RESPONDING"),
        ("ALLOCATED+COMPLETING", True, "ALLOCATED+COMPLETING"),
    ],
)
def test_states(state, usable, text):
    line = f"NodeName=c1 CPUTot=2 RealMemory=10 State={state} Gres=(null) Reason=Not responding [slurm@2026-11-22T10:00:00]"
    n = slurm.parse_nodes(line)["c1"]
    assert n.usable is usable and n.state_text == text
    assert n.reason == "Not responding [slurm@2026-11-22T10:00:00]" and n.gres == {}


def test_node_features_as_slurm_lists_them():
    assert slurm.parse_nodes((FIXTURES / "slurm/scontrol-show-node-h100.txt").read_text())["vm"].features == ()
    n = slurm.parse_nodes("NodeName=c1 CPUTot=2 RealMemory=10 State=IDLE AvailableFeatures=gpu,ib-hdr "
                          "ActiveFeatures=gpu,ib-hdr")["c1"]
    assert n.features == ("gpu", "ib-hdr")


@pytest.mark.parametrize(
    "text, parsed",
    [
        ("gpu:h100:2(S:0-1)", {"gpu:h100": 2}),
        ("gpu:2", {"gpu": 2}),
        ("gpu:a100:1,gpu:h100:2(S:0)", {"gpu:a100": 1, "gpu:h100": 2}),
        ("(null)", {}),
    ],
)
def test_gres(text, parsed):
    assert slurm.parse_gres(text) == parsed


PING_OK = """PING 10.0.0.2 (10.0.0.2) 56(84) bytes of data.
64 bytes from 10.0.0.2: icmp_seq=1 ttl=64 time=0.050 ms
64 bytes from 10.0.0.2: icmp_seq=2 ttl=64 time=0.070 ms
64 bytes from 10.0.0.2: icmp_seq=3 ttl=64 time=1.20 ms

--- 10.0.0.2 ping statistics ---
3 packets transmitted, 3 received, 0% packet loss, time 2ms
rtt min/avg/max/mdev = 0.050/0.440/1.200/0.540 ms
"""


def test_ping_stats():
    s = network.parse_ping("10.0.0.2", PING_OK)
    assert (s.sent, s.received, s.loss_pct) == (3, 3, 0.0)
    assert s.p50_ms == 0.070 and s.p99_ms == 1.20


def test_p99_of_a_nodes_round_trips_is_taken_over_all_its_peers():
    """Three peers, 34 pings each (what the L1 check sends to make 100): one late reply among
    102 is not the p99; two are (nearest rank: the 101st of 102)."""
    def peer(target: str, late: int) -> network.PingStats:
        return network.PingStats(target, 34, 34, (0.05,) * (34 - late) + (18.2,) * late)

    assert network.pooled_percentile([peer("a", 1), peer("b", 0), peer("c", 0)], 99) == 0.05
    assert network.pooled_percentile([peer("a", 1), peer("b", 1), peer("c", 0)], 99) == 18.2
    assert peer("a", 1).p99_ms == 18.2  # one peer's 34 alone: its p99 is its slowest
    assert network.pooled_percentile([network.PingStats("a", 3, 0, ())], 99) is None


def test_ping_loss_and_unreachable():
    lossy = PING_OK.replace("3 received, 0%", "1 received, 66%")
    assert round(network.parse_ping("x", lossy).loss_pct) == 67
    dead = network.parse_ping("x", "connect: Network is unreachable\n")
    assert dead.loss_pct == 100.0 and "unreachable" in dead.error


def test_ping_that_could_not_send_says_why():
    # real iputils output on a host whose neighbour table overflowed (1+32 local nodes)
    full = ("PING 10.0.0.9 (10.0.0.9) 56(84) bytes of data.\n"
            "ping: sendmsg: No buffer space available\n" * 3 +
            "\n--- 10.0.0.9 ping statistics ---\n"
            "0 packets transmitted, 0 received\n")
    silent = full.replace("ping: sendmsg: No buffer space available\n", "")  # iputils' usual way
    for out in (full, silent):
        s = network.parse_ping("10.0.0.9", out)
        assert s.loss_pct == 100.0 and "could be sent" in s.error and "gc_thresh3" in s.error
    other = network.parse_ping("x", full.replace("sendmsg: No buffer space available", "sendmsg: Operation not permitted"))
    assert other.error == "ping: sendmsg: Operation not permitted"
    assert not network.parse_ping("x", PING_OK).error


def test_iperf3_json():
    ok = network.parse_iperf3('{"end": {"sum_received": {"bits_per_second": 2.5e9}, "sum_sent": {"retransmits": 3}}}')
    assert ok.gbps == 2.5 and ok.retransmits == 3 and not ok.error
    err = network.parse_iperf3('{"error": "unable to connect to server: Connection refused"}')
    assert err.gbps == 0 and "refused" in err.error
    assert "no JSON" in network.parse_iperf3("iperf3: error").error


def test_slurmd_gres_lines_give_the_device_files():
    # Slurm 22.05 (Debian 12), run here: one line per gres.conf record
    old = "slurmd: Gres Name=gpu Type=sim Count=2 Index=0 ID=7696487 File=/dev/nvidia[0-1] (null)\n"
    assert slurm.parse_slurmd_gres(old) == ["/dev/nvidia0", "/dev/nvidia1"]
    # later releases, AutoDetect=nvml: one line per device, with links and flags after File=
    new = "".join(f"slurmd: Gres Name=gpu Type=h100 Count=1 Index={i} ID=7696487 File=/dev/nvidia{i} "
                  f"Cores=0-31 CoreCnt=64 Links=-1,0 Flags=HAS_FILE,HAS_TYPE,ENV_NVML\n" for i in (0, 1))
    assert slurm.parse_slurmd_gres(new) == ["/dev/nvidia0", "/dev/nvidia1"]
    none = "slurmd: Gres Name=gpu Type=sim Count=2 Index=0 ID=7696487 File=(null) (null)\n"
    assert slurm.parse_slurmd_gres(none) == []
    assert slurm.parse_slurmd_gres(old.replace("Name=gpu", "Name=mps")) == []


def test_sacct_sizes_in_mib():
    # sacct on Slurm 22.05 here, the same step: --noconvert prints bytes, the default K
    assert round(slurm.parse_size_mib("104132608"), 1) == 99.3
    assert round(slurm.parse_size_mib("101692K"), 1) == 99.3
    assert slurm.parse_size_mib("1.5G") == 1536.0 and slurm.parse_size_mib("96M") == 96.0
    assert slurm.parse_size_mib("") == 0.0 and slurm.parse_size_mib("n/a") == 0.0


def test_scontrol_show_config_parsed_and_scripts_found():
    # recorded on a local cluster (Slurm 22.05): no Prolog/Epilog of any kind configured
    text = (FIXTURES / "slurm" / "scontrol-show-config-local-22.05.txt").read_text()
    cfg = slurm.parse_config(text)
    assert cfg["ProctrackType"] == "proctrack/cgroup" and cfg["MpiDefault"] == "pmix"
    assert cfg["SLURM_CONF"].endswith("/etc/slurm/slurm.conf")
    assert cfg["JobAcctGatherFrequency"] == "30"  # Slurm's default (accounting off here)
    assert slurm.configured_scripts(cfg, slurm.NODE_SCRIPTS) == []
    assert slurm.configured_scripts(cfg, slurm.CONTROLLER_SCRIPTS) == []
    assert cfg["PrologSlurmctld"] == "(null)" and cfg["AllowedRAMSpace"] == "100.0%"  # a section's key too
    assert slurm.configured_scripts({"Epilog": "/a.sh,/b/*.sh"}, ("Epilog",)) == [("Epilog", "/a.sh"), ("Epilog", "/b/*.sh")]


def test_slurm_24_11_config_lists_scripts_one_line_each_and_mpi_none_as_null():
    # recorded on a local cluster of Debian 13's Slurm 24.11.5 (bench/compat_debian13.sh):
    # 22.05 prints "Epilog = a,b", 24.11 one "Epilog[N] = path" line per script, and nothing
    # when none is set; MpiDefault=none reads back as "(null)"
    plain = slurm.parse_config((FIXTURES / "slurm" / "scontrol-show-config-local-24.11.txt").read_text())
    assert plain["MpiDefault"] == "pmix" and slurm.mpi_default(plain) == "pmix"
    assert slurm.configured_scripts(plain, slurm.NODE_SCRIPTS + slurm.CONTROLLER_SCRIPTS) == []
    broken = slurm.parse_config((FIXTURES / "slurm" / "scontrol-show-config-local-24.11-epilog-mpinone.txt").read_text())
    assert broken["Epilog[0]"] == "/etc/slurm/hpcv-epilog-missing.sh" and "Epilog" not in broken
    assert slurm.configured_scripts(broken, slurm.NODE_SCRIPTS) == [
        ("Epilog", "/etc/slurm/hpcv-epilog-missing.sh"), ("HealthCheckProgram", "/usr/sbin/hpcv-nhc-missing")]
    assert broken["MpiDefault"] == "(null)" and slurm.mpi_default(broken) == "none"
    assert slurm.mpi_default({"MpiDefault": "none"}) == "none" and slurm.mpi_default({}) is None
    many = {"Prolog[0]": "/p0.sh", "Prolog[1]": "/p1/*.sh", "PrologFlags": "(null)", "PrologSlurmctld": "/c.sh"}
    assert slurm.config_list(many, "Prolog") == ["/p0.sh", "/p1/*.sh"]
    assert slurm.config_list(many, "PrologSlurmctld") == ["/c.sh"]


def test_slurm_versions_from_slurmd_and_the_controller():
    assert slurm.parse_version("slurm-wlm 22.05.8\n") == "22.05.8"  # Debian 12
    assert slurm.parse_version("slurm-wlm 24.11.5\n") == "24.11.5"  # Debian 13
    assert slurm.parse_version("slurm 23.11.10\n") == "23.11.10"  # upstream .rpm/.deb builds
    assert slurm.parse_version("slurmd: error: ...") is None
    for name in ("scontrol-show-config-local-22.05.txt", "scontrol-show-config-local-24.11.txt"):
        cfg = slurm.parse_config((FIXTURES / "slurm" / name).read_text())
        nodes = slurm.parse_nodes((FIXTURES / "slurm" / name.replace("config", "node").replace(
            "-22.05.txt", "-2.txt")).read_text())
        assert {n.raw["Version"] for n in nodes.values()} == {cfg["SLURM_VERSION"]}
        for n in nodes.values():
            assert slurm.version_problems(n.raw["Version"], cfg["SLURM_VERSION"], n.raw["Version"]) == []
    # a node a partial upgrade left at the old release (22.05 and 24.11 cannot share a cluster
    # here: the real mixed case is only judged from the recorded values)
    assert slurm.version_problems("23.11.4", "24.11.5", "23.11.4") == [
        "its slurmd registered as Slurm 23.11.4, slurmctld runs 24.11.5: upgrade the node to the controller's release"]
    assert slurm.version_problems("24.11.5", "24.11.5", "24.11.6") == [
        "slurmd 24.11.5 is running but 24.11.6 is installed (slurmd -V): restart slurmd there"]
    assert len(slurm.version_problems("", "24.11.5", None)) == 1


def test_scontrol_ping_lists_every_controller():
    # the primary line as 22.05 and 24.11 print it; the backup line as 22.05 printed it in
    # tests/faults (test_backup_controller_down); the DOWN banner from scontrol's source
    assert slurm.parse_ping("Slurmctld(primary) at ctl is UP\n") == [("primary", "ctl", "UP")]
    two = "Slurmctld(primary) at ctl is UP\nSlurmctld(backup) at c1 is DOWN\n"
    assert slurm.parse_ping(two) == [("primary", "ctl", "UP"), ("backup", "c1", "DOWN")]
    down = ("Slurmctld(primary) at ctl is DOWN\n*****************************************\n"
            "** RESTORE SLURMCTLD DAEMON TO SERVICE **\n*****************************************\n")
    assert slurm.parse_ping(down) == [("primary", "ctl", "DOWN")]
    assert slurm.parse_ping("scontrol: error: ...") == []


def test_slurm_24_11_nodes_partitions_and_mpi_plugins():
    nodes = slurm.parse_nodes((FIXTURES / "slurm" / "scontrol-show-node-local-24.11.txt").read_text())
    assert sorted(nodes) == ["c1", "g1", "g2"]
    g1 = nodes["g1"]
    assert (g1.state, g1.cpus, g1.real_memory_mb, g1.gres, g1.usable) == ("IDLE", 2, 1024, {"gpu:sim": 2}, True)
    assert nodes["c1"].gres == {} and nodes["c1"].raw["Version"] == "24.11.5"
    parts = slurm.parse_partitions((FIXTURES / "slurm" / "scontrol-show-partition-local-24.11.txt").read_text())
    assert list(parts) == ["all"] and parts["all"].default and parts["all"].nodes == "c1,g[1-2]"
    assert parts["all"].max_time == "01:00:00" and parts["all"].state == "UP"
    assert parts["all"].oversubscribe == "NO" and not parts["all"].forces_sharing
    assert parts["all"].max_cpus_per_node is None  # MaxCPUsPerNode=UNLIMITED
    text = (FIXTURES / "slurm" / "scontrol-show-partition-local-24.11.txt").read_text()
    assert slurm.parse_partitions(text.replace("MaxCPUsPerNode=UNLIMITED", "MaxCPUsPerNode=48"))["all"].max_cpus_per_node == 48
    # the list, then "specific pmix plugin versions available: pmix_v5" (PMIx 5 on Debian 13)
    assert mpi.plugin_types((FIXTURES / "slurm" / "srun-mpi-list-24.11.txt").read_text()) == [
        "none", "pmix", "cray_shasta", "pmi2", "pmix_v5"]


@pytest.mark.parametrize(
    "text, seconds",
    [("00:00:06", 6), ("00:01:00", 60), ("1-02:03:04", 93784), ("05:30", 330), ("UNLIMITED", None),
     ("NONE", None), ("N/A", None), ("", None)],
)
def test_slurm_durations(text, seconds):
    assert slurm.parse_duration_s(text) == seconds


def test_how_far_a_job_is_past_its_end_by_slurmctlds_clock():
    past = slurm.parse_job((FIXTURES / "slurm" / "scontrol-show-job-past-its-end-22.05.txt").read_text())
    assert (past.state, past.nodes) == ("RUNNING", "c1") and slurm.seconds_past_end(past) == 6.0
    done = slurm.parse_job((FIXTURES / "slurm" / "scontrol-show-job-timeout-22.05.txt").read_text())
    assert done.final and (done.state, done.raw["Reason"]) == ("TIMEOUT", "TimeLimit")
    pending = slurm.parse_job("JobId=9 JobState=PENDING Reason=Priority RunTime=00:00:00 StartTime=Unknown EndTime=Unknown")
    assert slurm.seconds_past_end(pending) is None


def test_over_time_limit_partition_overrides_slurm_conf():
    config = slurm.parse_config((FIXTURES / "slurm" / "scontrol-show-config-local-22.05.txt").read_text())
    partition = slurm.parse_oneliner((FIXTURES / "slurm" / "scontrol-show-partition-local.txt").read_text().splitlines()[0])
    assert partition["OverTimeLimit"] == "NONE" and slurm.over_time_limit_min(config, partition) == 0
    assert slurm.over_time_limit_min(config, {**partition, "OverTimeLimit": "UNLIMITED"}) is None
    assert slurm.over_time_limit_min(config, {**partition, "OverTimeLimit": "5"}) == 5
    assert slurm.over_time_limit_min({**config, "OverTimeLimit": "UNLIMITED"}, partition) is None
    assert slurm.over_time_limit_min({**config, "OverTimeLimit": "3 min"}, {}) == 3


def test_job_keys_with_colons_and_slashes_end_the_value_before_them():
    job = slurm.parse_job((FIXTURES / "slurm" / "scontrol-show-job-past-its-end-22.05.txt").read_text())
    assert job.raw["Partition"] == "batch" and job.raw["AllocNode:Sid"] == "ctl:15527"
    assert job.raw["CPUs/Task"] == "1" and job.raw["ReqB:S:C:T"] == "0:0:*:*"


@given(st.integers(0, 400), st.integers(0, 23), st.integers(0, 59), st.integers(0, 59))
def test_slurm_durations_as_scontrol_prints_them(days, hours, minutes, seconds):
    text = (f"{days}-" if days else "") + f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    assert slurm.parse_duration_s(text) == ((days * 24 + hours) * 60 + minutes) * 60 + seconds


@pytest.mark.parametrize("value, number", [("2 sec", 2), ("0 min", 0), ("5", 5), ("UNLIMITED", None), ("", None)])
def test_leading_number_of_a_config_value(value, number):
    assert slurm.leading_int(value) == number


@pytest.mark.parametrize("value, forced", [("NO", False), ("EXCLUSIVE", False), ("YES:4", False), ("FORCE:2", True),
                                           ("FORCE", True), ("", False)])
def test_only_oversubscribe_force_makes_jobs_share_cpus(value, forced):
    """What scontrol prints for OverSubscribe (the recorded partition, its value replaced; FORCE:2
    as Slurm 22.05 printed it for the oversubscribe fault): only FORCE shares CPUs with jobs that
    did not ask to share."""
    text = (FIXTURES / "slurm" / "scontrol-show-partition-local.txt").read_text()
    part = next(iter(slurm.parse_partitions(text.replace("OverSubscribe=NO", f"OverSubscribe={value}")).values()))
    assert part.oversubscribe == value and part.forces_sharing is forced


def test_a_job_without_mem_and_no_default_is_given_the_whole_node():
    """Recorded on a local cluster whose slurm.conf had no DefMemPerCPU (CR_Core_Memory, nodes of
    2 CPUs and 1024 MiB): Slurm gave the one-task job ``MinMemoryNode=0``, that is the node's
    whole memory, so one such job fits per node."""
    job = slurm.parse_job((FIXTURES / "slurm" / "scontrol-show-job-without-mem-no-default-22.05.txt").read_text())
    assert job.tres == {"cpu": "1", "mem": "1G", "node": "1", "billing": "1"}
    node = slurm.parse_nodes((FIXTURES / "slurm" / "scontrol-show-node-local-2.txt").read_text())["c1"]
    assert node.fits(int(job.tres["cpu"]), slurm.parse_size_mib(job.tres["mem"])) == (2, 1)


def test_cpus_and_memory_kept_for_the_system_are_not_the_jobs():
    node = slurm.parse_nodes("NodeName=c1 CPUTot=16 CPUEfctv=14 RealMemory=65536 MemSpecLimit=4096 State=IDLE")["c1"]
    assert (node.job_cpus, node.job_memory_mb) == (14, 61440)
    older = slurm.parse_nodes("NodeName=c1 CPUTot=16 RealMemory=65536 State=IDLE")["c1"]  # no CPUEfctv, no spec
    assert (older.job_cpus, older.job_memory_mb) == (16, 65536)


@given(cpus=st.integers(1, 256), memory=st.integers(1, 2 ** 21), job_cpus=st.integers(1, 8),
       per_cpu=st.integers(1, 2 ** 14))
def test_jobs_fit_by_cpus_and_by_memory(cpus, memory, job_cpus, per_cpu):
    """A DefMemPerCPU of at most the node's memory per CPU never leaves CPUs idle for memory."""
    node = slurm.parse_nodes(f"NodeName=n CPUTot={cpus} RealMemory={memory} State=IDLE")["n"]
    by_cpus, by_memory = node.fits(job_cpus, job_cpus * per_cpu)
    assert by_cpus == cpus // job_cpus and by_memory * job_cpus * per_cpu <= memory
    if per_cpu <= memory // cpus:
        assert by_memory >= by_cpus


def test_who_can_change_slurms_files():
    f = slurm.FileMode
    trusted = {0, slurm.slurm_user_uid({"SlurmUser": "slurm(64030)"})}
    assert trusted == {0, 64030} and slurm.slurm_user_uid({"SlurmUser": "(null)"}) is None
    files = [f("/etc/slurm/slurm.conf", "file", 0, 0, 0o644, "root", "root"),
             f("/etc/slurm/gres.conf", "file", 64030, 64030, 0o640, "slurm", "slurm"),
             f("/etc/slurm/cgroup.conf", "file", 0, 0, 0o666, "root", "root"),
             f("/etc/slurm/epilog", "file", 1000, 1000, 0o755, "alice", "alice"),
             f("/etc/slurm/prolog", "file", 0, 100, 0o775, "root", "users"),
             f("/etc/slurm/health", "file", 0, 0, 0o775, "root", "root"),
             f("/tmp", "directory", 0, 0, 0o1777, "root", "root"),
             f("/scratch", "directory", 0, 0, 0o777, "root", "root")]
    assert slurm.unsafe_modes(files, trusted) == [
        "file /etc/slurm/cgroup.conf (0666 root:root) writable by every user",
        "file /etc/slurm/epilog (0755 alice:alice) owned by alice (uid 1000)",
        "file /etc/slurm/prolog (0775 root:users) writable by group users",
        "directory /scratch (0777 root:root) writable by every user"]


@pytest.mark.parametrize("text, seconds", [
    ("UNLIMITED", None), ("INFINITE", None), ("30", 1800), ("30:15", 1815), ("1:00:00", 3600),
    ("04:00:00", 14400), ("2-00:00:00", 172800), ("2-3", 183600), ("2-3:30", 185400), ("1-00:00:01", 86401),
])
def test_slurm_time_limits_in_every_format(text, seconds):
    assert slurm.time_limit_seconds(text) == seconds


def test_a_time_limit_that_is_none_of_them_is_refused():
    for text in ("", "1:2:3:4", "1-", "abc", "-5"):
        with pytest.raises(ValueError):
            slurm.time_limit_seconds(text)


@given(st.integers(0, 400 * 86400))
def test_a_limit_as_scontrol_prints_it_reads_back_as_the_same_duration(total):
    days, rest = divmod(total, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    printed = (f"{days}-" if days else "") + f"{h:02d}:{m:02d}:{s:02d}"
    assert slurm.time_limit_seconds(printed) == total


@given(st.frozensets(st.integers(0, 300), max_size=40))
def test_cpu_lists_round_trip(cpus):
    text = isolation.cpulist(cpus)
    assert isolation.parse_cpulist(text) == cpus
    assert ",," not in text and not text.startswith(",")


def test_cpu_list_in_the_kernels_format():
    assert isolation.cpulist({0, 1, 2, 3, 8, 10, 11}) == "0-3,8,10-11"
    assert isolation.cpulist(set()) == ""


def test_tasks_of_a_step_sharing_cpus_are_named_in_pairs():
    labelled = "".join(f"{t}: NODE c1\n{t}: CPUS {cpus}\n{t}: START 1\n{t}: END 2\n" for t, cpus in enumerate(("0", "1", "2-3")))
    bound = isolation.parse_step_facts(labelled)
    assert [isolation.cpulist(t.cpus) for t in bound] == ["0", "1", "2-3"]
    assert isolation.shared_cpus(bound) == []
    unbound = isolation.parse_step_facts(labelled.replace("CPUS 0\n", "CPUS 0-3\n"))
    assert [(a, b, isolation.cpulist(c)) for a, b, c in isolation.shared_cpus(unbound)] == [(0, 1, "1"), (0, 2, "2-3")]


@pytest.mark.parametrize("text, ports", [("60001-63000", (60001, 63000)), ("0-0", None), ("", None), ("(null)", None)])
def test_srun_port_range(text, ports):
    assert slurm.srun_port_range({"SrunPortRange": text} if text else {}) == ports


def test_a_failed_tcp_open_is_reported_without_bashs_prefix():
    assert network._tcp_error("bash: line 1: /dev/tcp/10.0.0.1/6817: Connection refused\n") == "Connection refused"
    assert network._tcp_error("bash: connect: Network is unreachable\nbash: line 1: /dev/tcp/h/1: Network is unreachable") \
        == "Network is unreachable"
    assert network._tcp_error("") == ""


# ---------------------------------------------------------------- what a node has against what Slurm gives jobs
def test_capacity_as_the_probe_prints_it_and_an_unreadable_answer():
    """The lines: /sys/devices/system/cpu/online, MemTotal in kB, the TmpFS's size in MiB (this machine's, recorded)."""
    assert slurm.parse_capacity("0-1\n24683772\n258020\n") == slurm.NodeCapacity("0-1", 2, 24105, 258020)
    assert slurm.parse_capacity("0-3,8-11\n") == slurm.NodeCapacity("0-3,8-11", 8, None, None)
    assert slurm.parse_capacity("cat: /sys/devices/system/cpu/online: No such file\n").cpus is None
    assert slurm.parse_capacity("") == slurm.NodeCapacity("", None, None, None)


def test_the_h100_node_has_what_slurm_gives_its_jobs_and_a_lost_dimm_does_not():
    """The recorded H100 node (CPUTot 16, RealMemory 100000 MiB): 16 CPUs and ~128 GiB hold it."""
    (h100,) = slurm.parse_nodes((FIXTURES / "slurm" / "scontrol-show-node-h100.txt").read_text()).values()
    assert (h100.cpus, h100.real_memory_mb) == (16, 100000)
    assert slurm.capacity_shortfalls(h100, slurm.NodeCapacity("0-15", 16, 128461)) == []
    assert slurm.capacity_shortfalls(h100, slurm.NodeCapacity("0-7", 8, 64230)) == [
        "CPUTot 16 but 8 CPU(s) online (/sys/devices/system/cpu/online: 0-7)",
        "RealMemory 100000 MiB but MemTotal 64230 MiB"]
    # TmpDisk=0 there: Slurm promises no scratch, so none is compared; where it is set, the TmpFS must hold it
    assert slurm.capacity_shortfalls(h100, slurm.NodeCapacity("0-15", 16, 128461, 10)) == []
    scratch = dataclasses.replace(h100, raw={**h100.raw, "TmpDisk": "500000"})
    assert slurm.capacity_shortfalls(scratch, slurm.NodeCapacity("0-15", 16, 128461, 420000), "/scratch") == [
        "TmpDisk 500000 MiB but TmpFS /scratch holds 420000 MiB"]
    assert slurm.capacity_shortfalls(scratch, slurm.NodeCapacity("0-15", 16, 128461, 500000), "/scratch") == []


# ---------------------------------------------------------------- the CPU layout Slurm declares against slurmd -C
def test_the_layout_slurmd_finds_and_the_one_slurm_declares_for_the_recorded_h100_node():
    """slurmd -C as this machine's printed it; the H100 node's slurm.conf gave CPUs=16 alone,
    which Slurm lays out as 16 sockets of one core."""
    hardware = slurm.parse_hardware("NodeName=c1 CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 "
                                    "RealMemory=24105\nUpTime=0-17:39:32\n")
    assert hardware == slurm.Topology(cpus=2, boards=1, sockets=1, cores_per_socket=2, threads_per_core=1)
    assert slurm.parse_hardware("slurmd: error: something\n") is None
    (h100,) = slurm.parse_nodes((FIXTURES / "slurm" / "scontrol-show-node-h100.txt").read_text()).values()
    declared = slurm.declared_topology(h100)
    assert declared == slurm.Topology(cpus=16, boards=1, sockets=16, cores_per_socket=1, threads_per_core=1)
    smt = slurm.Topology(cpus=16, boards=1, sockets=1, cores_per_socket=8, threads_per_core=2)
    assert slurm.topology_differences(declared, smt) == [
        "Sockets=16 (the hardware has 1)", "CoresPerSocket=1 (the hardware has 8)", "ThreadsPerCore=1 (the hardware has 2)"]
    assert "hyperthreads for cores" in slurm.topology_consequence(declared, smt)
    assert "whole cores of 2 CPUs" in slurm.topology_consequence(smt, declared)
    assert "ranks meant for one socket" in slurm.topology_consequence(
        declared, dataclasses.replace(declared, sockets=2, cores_per_socket=8))


@given(boards=st.integers(1, 2), per_board=st.integers(1, 8), cores=st.integers(1, 128), threads=st.integers(1, 4),
       other=st.sampled_from(["Boards", "Sockets", "CoresPerSocket", "ThreadsPerCore", None]))
def test_a_layout_read_back_from_its_node_line_is_itself_and_any_change_is_named(boards, per_board, cores, threads,
                                                                                 other):
    """The slurm.conf spelling of a layout (slurmd -C's) parses back to it; scontrol's Sockets
    count every board's; a layout differing in one key is named by that key alone."""
    layout = slurm.Topology(boards * per_board * cores * threads, boards, boards * per_board, cores, threads)
    assert slurm.parse_hardware(f"NodeName=n CPUs={layout.cpus} {layout.node_line()} RealMemory=1") == layout
    shown = slurm.SlurmNode("n", "IDLE", frozenset(), layout.cpus, 1, {}, "", (), "", raw={
        "CPUTot": str(layout.cpus), "Boards": str(boards), "Sockets": str(layout.sockets),
        "CoresPerSocket": str(cores), "ThreadsPerCore": str(threads)})
    assert slurm.declared_topology(shown) == layout
    assert slurm.topology_differences(layout, layout) == []
    if other:
        field = {"Boards": "boards", "Sockets": "sockets", "CoresPerSocket": "cores_per_socket",
                 "ThreadsPerCore": "threads_per_core"}[other]
        changed = dataclasses.replace(layout, **{field: getattr(layout, field) + 1})
        assert [d.split("=")[0] for d in slurm.topology_differences(changed, layout)] == [other]


@given(asked=st.integers(1, 256), sockets=st.integers(1, 4), cores=st.integers(1, 64), threads=st.integers(1, 4),
       params=st.sampled_from(["CR_CPU", "CR_CPU_Memory", "CR_Core", "CR_Core_Memory",
                               "CR_Core_Memory,CR_ONE_TASK_PER_CORE", "CR_Socket_Memory", "CR_Memory", ""]))
def test_a_task_is_granted_whole_cores_or_sockets_as_slurm_allocates_them(asked, sockets, cores, threads, params):
    """``-c K``: K CPUs under CR_CPU (and CR_Memory); under CR_Core (cons_tres's default) the
    whole cores holding K threads, under CR_Socket whole sockets; a task seeing K or that many
    is right, any other count is named with both."""
    layout = slurm.Topology(sockets * cores * threads, 1, sockets, cores, threads)
    got = slurm.cpus_granted(asked, layout, params)
    unit = {"CR_CPU": 1, "CR_CPU_": 1, "CR_MEMO": 1, "CR_SOCK": cores * threads}.get(params.upper()[:7], threads)
    assert got % unit == 0 and asked <= got < asked + unit
    assert slurm.cpus_granted(asked, None, params) == asked
    assert slurm.cpus_seen_problem(asked, set(range(asked)), got) == ""
    assert slurm.cpus_seen_problem(asked, set(range(got)), got) == ""
    wrong = slurm.cpus_seen_problem(asked, set(range(got + 1)), got)
    assert wrong.startswith(f"-c {asked} sees {got + 1} CPUs (0") and f"expected {asked}" in wrong
    assert (f"or {got}: the whole cores" in wrong) == (got != asked)
    if threads > 1:  # slurm.conf's CPUs= the cores: each of Slurm's CPUs is a core of all its threads
        by_core = dataclasses.replace(layout, cpus=layout.cores)
        assert slurm.cpus_granted(asked, by_core, params) == asked * threads


@given(cpus=st.integers(1, 512), online=st.integers(1, 512), real=st.integers(1, 2 ** 21), mem=st.integers(1, 2 ** 21))
def test_a_shortfall_exactly_where_slurm_gives_more_than_the_node_has(cpus, online, real, mem):
    (node,) = slurm.parse_nodes((FIXTURES / "slurm" / "scontrol-show-node-h100.txt").read_text()).values()
    node = dataclasses.replace(node, cpus=cpus, real_memory_mb=real)
    found = slurm.capacity_shortfalls(node, slurm.NodeCapacity(f"0-{online - 1}", online, mem))
    assert [f.split()[0] for f in found] == (["CPUTot"] if cpus > online else []) + (["RealMemory"] if real > mem else [])

"""The Ray backend on real Ray: a local instance started by ``rad craft``, and a two-node
cluster on this machine (``ray.cluster_utils.Cluster``) shared by the module.

No Ray mock anywhere: attempts run as Ray tasks in Ray workers, the command agent
reads which node it runs on from the node's environment, workers are killed for real,
and SIGINT goes to the real ``rad craft`` process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
import uuid
from pathlib import Path

import pytest

from helpers import events, make_workspace, manifest, popen_rad, rad_env, read_manifest, run_rad, task, tasks_by_id, write_agent

pytestmark = pytest.mark.xdist_group("ray")  # one worker runs them all, sharing the cluster

AGENT = str(Path(__file__).parent / "agents" / "ray_agent.py")
FAST_RETRY = ("--base-delay-ms", "10", "--max-delay-ms", "50")


@pytest.fixture(scope="module")
def cluster():
    """A head node (tag ``head``) and a worker node with the custom resource ``special``."""
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex}
    saved = {name: os.environ.get(name) for name in auth}
    os.environ.update(auth)  # read by Ray when imported, and by the cluster's processes
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False, "env_vars": {"RADIUM_TEST_NODE": "head"}},
    )
    try:
        cluster.add_node(num_cpus=1, resources={"special": 1}, env_vars={"RADIUM_TEST_NODE": "special"})
        cluster.wait_for_nodes()
        cluster.auth_env = auth
        yield cluster
    finally:
        cluster.shutdown()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def cluster_env(ws: Path, cluster, **extra: str) -> dict[str, str]:
    return rad_env(ws, {**cluster.auth_env, **extra})


def command_agent(ws: Path, agent_id: str, *argv: str, resources: dict | None = None) -> None:
    write_agent(ws, agent_id, engine="command", command=[sys.executable, AGENT, *argv])
    if resources:
        path = ws / "agents" / f"{agent_id}.toml"
        table = "\n".join(f"{json.dumps(k)} = {v}" for k, v in resources.items())
        path.write_text(path.read_text() + "\n[agent.resources]\n" + table + "\n")


def alive(pid: int) -> bool:
    """A live process (a zombie waiting to be reaped counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def worker_title(agent_pid: int) -> str:
    """The title of the process that started ``agent_pid`` (the Ray worker running the attempt)."""
    with open(f"/proc/{agent_pid}/stat") as fh:
        parent = fh.read().rsplit(")", 1)[1].split()[1]
    with open(f"/proc/{parent}/cmdline", "rb") as fh:
        return fh.read().split(b"\0")[0].decode().strip()


def wait_until(condition, timeout: float, what: str) -> None:
    """Poll ``condition`` (a process's death, a file some other process writes) up to ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def outputs(ws: Path) -> dict[str, str]:
    folder = ws / ".radium" / "plan" / "backlog" / "REQ-001-test" / "artifacts" / "tasks"
    return {p.name: p.read_text() for p in sorted(folder.glob("*.md"))}


# ---------------------------------------------------------------- a local instance per run


def test_local_and_ray_backends_give_the_same_outcome_and_outputs(tmp_path: Path) -> None:
    plan = manifest(
        [task("I1.T1"), task("I1.T2", deps=["I1.T1"], description="mock-fail: server_error(502)"), task("I1.T3")],
        [task("I2.T1", deps=["I1.T2", "I1.T3"]), task("I2.T2", description="mock-fail: bad_request")],
    )
    local = make_workspace(tmp_path / "local", plan)
    on_ray = tmp_path / "ray"
    shutil.copytree(local, on_ray)
    args = ("craft", "REQ-001", "--yolo", "--keep-going", "--parallel", "2", "--json", *FAST_RETRY)
    first = run_rad(*args, cwd=local)
    second = run_rad(*args, "--backend", "ray", cwd=on_ray, timeout=120)
    assert first.returncode == second.returncode == 1, second.stderr

    def outcome(ws: Path) -> dict:
        return {tid: (t["status"], t["attempts"], (t.get("last_error") or {}).get("kind")) for tid, t in tasks_by_id(read_manifest(ws)).items()}

    assert outcome(on_ray) == outcome(local)
    assert outcome(on_ray)["I1.T2"] == ("completed", 2, None)
    assert outcome(on_ray)["I2.T2"] == ("failed", 1, "bad request")
    assert outputs(on_ray) == outputs(local) and "I2.T1.md" in outputs(local)
    started = events(second.stdout)[0]
    assert started["backend"] == "ray" and started["where"].startswith("a local Ray instance (")
    assert events(first.stdout)[0]["backend"] == "local"


# ---------------------------------------------------------------- an existing two-node cluster


def test_a_custom_resource_sends_the_tasks_to_the_node_that_has_it(tmp_path: Path, cluster) -> None:
    ws = make_workspace(tmp_path / "ws", manifest([task(f"I1.T{n}", agent="special") for n in range(1, 5)]), agents=())
    command_agent(ws, "special", "node", resources={"special": 0.25})
    result = run_rad("craft", "REQ-001", "--backend", "ray", "--ray-address", cluster.address, "--parallel", "4", cwd=ws, env=cluster_env(ws, cluster))
    assert result.returncode == 0, result.stderr
    assert f"Backend: ray · the Ray cluster at {cluster.address} (2 nodes)" in result.stdout
    answers = {name: text.strip() for name, text in outputs(ws).items() if not name.endswith(".prompt.md")}
    assert answers == {f"I1.T{n}.md": "special" for n in range(1, 5)}


def test_a_killed_worker_is_retried_and_its_agent_is_stopped(tmp_path: Path, cluster) -> None:
    marker = tmp_path / "crashed-once"
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1", agent="crashy")]), agents=())
    command_agent(ws, "crashy", "crash-once", str(marker))
    result = run_rad("craft", "REQ-001", "--backend", "ray", "--ray-address", cluster.address, "--json", *FAST_RETRY, cwd=ws, env=cluster_env(ws, cluster))
    assert result.returncode == 0, result.stderr
    failed = [e for e in events(result.stdout) if e["event"] == "attempt_failed"]
    assert [(e["category"], e["kind"]) for e in failed] == [("recoverable", "worker lost")]
    assert "WorkerCrashedError" in failed[0]["message"] or "died" in failed[0]["message"], failed[0]["message"]
    done = tasks_by_id(read_manifest(ws))["I1.T1"]
    assert (done["status"], done["attempts"]) == ("completed", 2)
    assert outputs(ws)["I1.T1.md"].strip() == "recovered"
    # The first agent outlived its worker (its own session); the reaper ended it.
    first_agent = int(marker.read_text())
    wait_until(lambda: not alive(first_agent), 10, "the orphaned agent to be killed")


@pytest.mark.parametrize(
    ("signum", "code", "left"),
    [(signal.SIGINT, 130, {"pending"}), (signal.SIGTERM, 143, {"pending"}), (signal.SIGKILL, -9, {"pending", "in_progress"})],
    ids=["sigint", "sigterm", "kill-9"],
)
def test_a_stopped_run_ends_its_ray_tasks_and_resume_completes(tmp_path: Path, cluster, signum, code, left) -> None:
    flag, piddir = tmp_path / "hang", tmp_path / "pids"
    flag.touch()
    piddir.mkdir()
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1", agent="hang"), task("I1.T2", agent="hang")]), agents=())
    command_agent(ws, "hang", "hang-while", str(flag), str(piddir))
    env = cluster_env(ws, cluster)
    args = ("craft", "REQ-001", "--backend", "ray", "--ray-address", cluster.address, "--parallel", "2")
    process = popen_rad(*args, cwd=ws, env=env)
    try:
        wait_until(lambda: len([p for p in piddir.iterdir() if not p.name.endswith(".tmp")]) == 2, 60, "both agents to start")
        # Each attempt is a Ray task named radium:<task id> (Ray titles its worker process so).
        workers = {worker_title(int(f.name)) for f in piddir.iterdir()}
        assert workers == {"ray::radium:I1.T1", "ray::radium:I1.T2"}, workers
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == code, stderr
    if signum == signal.SIGINT:
        assert "Execution aborted by user. Progress saved to plan_manifest.json" in stdout
    elif signum == signal.SIGTERM:
        assert "Execution stopped by SIGTERM. Progress saved to plan_manifest.json" in stdout
    assert {t.get("status", "pending") for t in tasks_by_id(read_manifest(ws)).values()} <= left  # (the journal is not read here)
    # The agents (in sessions of their own) and their children die with their Ray workers.
    pids = [int(pid) for f in piddir.iterdir() for pid in f.read_text().split()]
    assert len(pids) == 4
    wait_until(lambda: not any(alive(pid) for pid in pids), 20, "the agents and their children to be killed")

    flag.unlink()
    resumed = run_rad(*args, "--resume", cwd=ws, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert {t["status"] for t in tasks_by_id(read_manifest(ws)).values()} == {"completed"}


def test_a_task_no_node_can_hold_fails_with_a_clear_message(tmp_path: Path, cluster) -> None:
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1", agent="gpu")]), agents=())
    command_agent(ws, "gpu", "node", resources={"gpu-node": 1})
    env = cluster_env(ws, cluster, RADIUM_RAY_SCHEDULE_TIMEOUT_S="0")
    result = run_rad("craft", "REQ-001", "--backend", "ray", "--ray-address", cluster.address, "--json", cwd=ws, env=env)
    assert result.returncode == 1, result.stderr
    (failed,) = [e for e in events(result.stdout) if e["event"] == "task_failed"]
    assert failed["kind"] == "unschedulable" and failed["attempts"] == 1
    assert "no node of the Ray cluster at" in failed["message"] and "gpu-node = 1" in failed["message"]
    assert "[agent.resources] of agent 'gpu'" in failed["message"]


# ---------------------------------------------------------------- before any task


def test_an_unreachable_ray_address_exits_2_with_one_line(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1")]))
    before = read_manifest(ws)
    started = time.monotonic()
    result = run_rad("craft", "REQ-001", "--backend", "ray", "--ray-address", "127.0.0.1:1", cwd=ws)
    assert time.monotonic() - started < 15
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "Error: cannot reach the Ray cluster at 127.0.0.1:1: Connection refused "
        "(start it (ray start --head) or fix --ray-address / RADIUM_RAY_ADDRESS)"
    ]
    assert result.stdout == ""  # not even run_started: nothing ran
    assert read_manifest(ws) == before


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("--backend", "spark"), {}, "Error: --backend: Input should be 'local' or 'ray'"),
        (("--ray-address", "10.0.0.5:6379"), {}, "Error: --ray-address needs the ray backend (add --backend ray)"),
        ((), {"RADIUM_BACKEND": "dask"}, "Error: RADIUM_BACKEND=dask: Input should be 'local' or 'ray'"),
    ],
)
def test_bad_backend_settings_exit_2(tmp_path: Path, args, env, message) -> None:
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1")]))
    result = run_rad("craft", "REQ-001", *args, cwd=ws, env=rad_env(ws, env))
    assert (result.returncode, result.stderr.strip()) == (2, message)


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ('num_cpus = "two"', "num_cpus must be a number"),
        ("CPU = 1", "'CPU' is set by Ray itself"),
        ("memory_mb = 1.5", "memory_mb must be a whole number of MiB"),
        ("special = 2.5", "special = 2.5: Ray needs whole amounts above 1"),
        ("num_gpus = -1", "num_gpus must not be negative"),
    ],
)
def test_bad_agent_resources_are_reported_with_the_file(tmp_path: Path, table: str, problem: str) -> None:
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1")]))
    path = ws / "agents" / "writer.toml"
    path.write_text(path.read_text() + "\n[agent.resources]\n" + table + "\n")
    result = run_rad("craft", "REQ-001", cwd=ws)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: invalid agent file ") and "agent.resources" in line and problem in line, line


def test_the_local_backend_ignores_agent_resources(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1")]))
    path = ws / "agents" / "writer.toml"
    path.write_text(path.read_text() + '\n[agent.resources]\nnum_gpus = 8\n"gpu-node" = 1\n')
    listed = json.loads(run_rad("agents", "--json", cwd=ws).stdout)["agents"]
    assert [a["resources"] for a in listed] == [{"num_gpus": 8, "gpu-node": 1}]
    result = run_rad("craft", "REQ-001", cwd=ws)
    assert result.returncode == 0, result.stderr
    assert "Backend:" not in result.stdout

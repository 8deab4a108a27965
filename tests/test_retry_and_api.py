"""The retry policy object and the seed's Python API (``radium.planning.executor``).

These run in-process with the real executor and the real mock engine; only the
sleep function is injected, so backoff sequences are asserted exactly without
waiting (tenacity's testing style).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from radium.engines import EngineSettings, create_engine
from radium.errors import ErrorCategory, RateLimitError, ServerError
from radium.codec import from_data
from radium.models import PlanManifest
from radium.planning.executor import (
    ExecutionConfig,
    ExecutionError,
    PlanExecutor,
    RunMode,
    TaskResult,
)
from radium.retry import RetryPolicy, ServerHint, format_duration_ms
from radium.store import PlanStore

from helpers import manifest, task


def test_backoff_doubles_from_the_base_and_is_capped() -> None:
    policy = RetryPolicy(base_delay_ms=1000, max_delay_ms=5000)
    assert [policy.backoff_ms(k) for k in range(5)] == [1000, 2000, 4000, 5000, 5000]
    assert RetryPolicy(base_delay_ms=100).max_attempts == 4


def test_jitter_stays_between_half_and_full_delay() -> None:
    low = RetryPolicy(jitter=True, random=lambda: 0.0)
    high = RetryPolicy(jitter=True, random=lambda: 0.999999)
    assert low.backoff_ms(1) == 1000
    assert 1999 < high.backoff_ms(1) <= 2000


def test_retry_after_is_a_floor_not_a_replacement() -> None:
    policy = RetryPolicy(base_delay_ms=1000)
    assert policy.plan_wait(0, ServerHint(2.5, "retry-after")).delay_ms == 2500
    assert policy.plan_wait(0, ServerHint(2.5, "retry-after")).explain() == "Wait 2.5 seconds (retry-after from server)"
    assert policy.plan_wait(2, ServerHint(0.5, "retry-after")).delay_ms == 4000
    timed = policy.server_timed_wait(ServerHint(12, "x-ratelimit-reset-requests"))
    assert (timed.delay_ms, timed.counted) == (12000, False)
    assert timed.explain() == "Wait 12 seconds (x-ratelimit-reset-requests from server; not counted as a retry)"
    assert policy.plan_wait(1, None).explain() == "Wait 2 seconds (1000ms * 2^1)"
    assert RetryPolicy(base_delay_ms=1000, max_delay_ms=1500).plan_wait(3, None).explain() == (
        "Wait 1.5 seconds (1000ms * 2^3, capped at 1500ms)"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_retries": -1}, "max_retries"),
        ({"base_delay_ms": 10, "max_delay_ms": 5}, "max_delay_ms"),
        ({"timeout_s": 0}, "timeout_s"),
    ],
)
def test_policy_rejects_nonsense(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)


def test_duration_formatting() -> None:
    assert [format_duration_ms(v) for v in (1000, 2000, 250, 1500, 60000)] == [
        "1 second",
        "2 seconds",
        "250ms",
        "1.5 seconds",
        "60 seconds",
    ]


def test_seed_defaults_and_names() -> None:
    config = ExecutionConfig()
    assert (config.resume, config.skip_completed, config.check_dependencies) == (False, True, True)
    assert config.state_path == Path("plan/plan_manifest.json")
    assert config.context_files is None
    assert config.run_mode == RunMode.bounded(5) and config.run_mode.limit == 5
    assert RunMode.continuous().limit == 1000
    assert (config.retry.max_retries, config.retry.base_delay_ms) == (3, 1000)
    assert issubclass(RateLimitError, ExecutionError)
    assert RateLimitError("x").category is ErrorCategory.RECOVERABLE


def _executor(plan: dict, tmp_path: Path | None = None) -> tuple[PlanExecutor, PlanManifest, list[float]]:
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    store = None
    if tmp_path is not None:
        (tmp_path / "plan").mkdir(parents=True)
        store = PlanStore(tmp_path)
    executor = PlanExecutor(ExecutionConfig(), store=store, sleep=record)
    data = from_data(PlanManifest, plan)
    executor.prepare(data)
    return executor, data, slept


def test_execute_task_with_retry_waits_1_2_4_seconds() -> None:
    executor, data, slept = _executor(manifest([task("I1.T1", description="mock-fail: server_error(502)*3")]))
    engine = create_engine(EngineSettings(engine="mock"))
    result = asyncio.run(executor.execute_task_with_retry(data.iterations[0].tasks[0], engine))
    assert isinstance(result, TaskResult) and result.success and result.attempts == 4
    assert slept == [1.0, 2.0, 4.0]


def test_execute_task_with_retry_arguments_override_the_policy() -> None:
    executor, data, slept = _executor(manifest([task("I1.T1", description="mock-fail: timeout*always")]))
    engine = create_engine(EngineSettings(engine="mock"))
    result = asyncio.run(executor.execute_task_with_retry(data.iterations[0].tasks[0], engine, 2, 100))
    assert not result.success and result.attempts == 3
    assert slept == [0.1, 0.2]
    assert result.error.category is ErrorCategory.RECOVERABLE


def test_retry_after_above_the_ceiling_fails_without_waiting() -> None:
    executor, data, slept = _executor(manifest([task("I1.T1", description="mock-fail: rate_limit(900)")]))
    engine = create_engine(EngineSettings(engine="mock"))
    result = asyncio.run(executor.execute_task_with_retry(data.iterations[0].tasks[0], engine))
    assert not result.success and slept == []
    assert "asked to wait 900 seconds (retry-after), more than the 300 s allowed" in str(result.error)
    assert result.error.category is ErrorCategory.FATAL


def test_check_dependencies_and_progress() -> None:
    executor, data, _ = _executor(manifest([task("I1.T1"), task("I1.T2", deps=["I1.T1"]), task("I1.T3")]))
    second = data.iterations[0].tasks[1]
    with pytest.raises(ExecutionError, match="Dependency task not completed: I1.T1"):
        executor.check_dependencies(data, second)
    data.iterations[0].tasks[0].completed = True
    executor.check_dependencies(data, second)
    assert executor.calculate_progress(data) == 33
    assert executor.format_progress(data, 1, 323, "I1.T2") == (
        "[Iteration 1] Progress: 1/3 tasks | Current: I1.T2 | Elapsed: 0:05:23\n• Progress: 33%"
    )


def test_run_through_the_api_checkpoints_to_the_store(tmp_path: Path) -> None:
    executor, data, _ = _executor(manifest([task("I1.T1"), task("I1.T2", deps=["I1.T1"])]), tmp_path)
    seen: list[str] = []
    executor.emit = lambda event: seen.append(event.type)
    result = asyncio.run(executor.run(data))
    assert result.outcome == "completed" and result.exit_code == 0
    saved = executor.store.load()
    assert all(t.completed for _, t in saved.tasks())
    assert (tmp_path / "artifacts" / "tasks" / "I1.T2.md").is_file()
    assert seen[0] == "run_started" and seen[-1] == "run_finished"
    assert executor.store.saves >= 5  # start and completion of each task, and the final save


def test_atomic_write_failure_keeps_the_old_file(tmp_path: Path, monkeypatch) -> None:
    """Disk-full cannot be produced safely here, so os.fsync is made to fail (a fake, said so)."""
    import os

    from radium import store

    target = tmp_path / "m.json"
    target.write_text("old")

    def failing_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store.os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        store.atomic_write_text(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["m.json"]


def test_server_error_keeps_its_status() -> None:
    error = ServerError("boom", status=529)
    assert error.status == 529 and error.kind == "server error"
    assert error.to_dict() == {"category": "recoverable", "kind": "server error", "message": "boom"}

"""The Ray backend: each attempt runs as a Ray task named ``radium:<task id>``.

The driver (``rad craft``) keeps everything that decides: dependency order,
retries and their waits, rate limits, the manifest and its journal. This module
only sends one ``AttemptCall`` to the cluster and brings back the answer or the
typed error, as a *value* (``run_attempt`` never raises our errors through
Ray's exception wrapping). Ray's own retries are off (``max_retries=0``), so
every attempt is one the executor counted.

What can go wrong, and what it becomes (``radium.errors``):

- the cluster cannot be reached or Ray cannot start → ``BackendUnavailableError``
  from ``start()``, before any task (exit 2);
- the worker or node running an attempt dies (``WorkerCrashedError``,
  ``NodeDiedError``, ``ObjectLostError``, ``OwnerDiedError``, out of memory…)
  → ``WorkerLostError``, recoverable: the executor retries it;
- no node has the resources an agent asks for → ``UnschedulableTaskError``,
  fatal, at once on a local instance, after ``schedule_timeout_s`` on a cluster
  (a node with them may join: an autoscaler). Infeasibility is read from the
  cluster's node table, not guessed from a task that does not start.

API keys never travel in task arguments: a worker reads them from its own
environment (a local instance inherits the driver's; nodes of an existing
cluster must have them set).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Iterator

from radium import errors
from radium.dispatch import AttemptCall, Dispatcher

if TYPE_CHECKING:
    from radium.engines.base import Engine, EngineResponse

CONNECT_TIMEOUT_S = 30.0
"""Bound on reaching a cluster (or starting a local instance): past it, exit 2."""
PROBE_TIMEOUT_S = 5.0
NODES_TTL_S = 2.0
"""How long the cluster's node table is trusted for the feasibility check."""
_DIED = (
    "WorkerCrashedError",
    "NodeDiedError",
    "LocalRayletDiedError",
    "ObjectLostError",
    "OwnerDiedError",
    "RayActorError",
    "OutOfMemoryError",
    "TaskCancelledError",
)


def ray_options(call: AttemptCall) -> dict[str, Any]:
    """The Ray task options for one attempt, from the agent's ``[agent.resources]``.

    An agent that declares nothing asks for no CPU: model calls wait on the
    network, and ``--parallel`` alone bounds how many run at once.
    """
    wanted = dict(call.resources)
    options: dict[str, Any] = {
        "name": f"radium:{call.task_id}",
        "max_retries": 0,
        "retry_exceptions": False,
        "num_cpus": wanted.pop("num_cpus", 0),
        "num_gpus": wanted.pop("num_gpus", 0),
    }
    memory_mb = wanted.pop("memory_mb", None)
    if memory_mb:
        options["memory"] = int(memory_mb) * 1024 * 1024
    if wanted:
        options["resources"] = wanted
    return options


def _needs(options: dict[str, Any]) -> dict[str, float]:
    """The same request in the node table's terms (``CPU``, ``GPU``, ``memory``, custom)."""
    needs = {"CPU": options["num_cpus"], "GPU": options["num_gpus"], "memory": options.get("memory", 0)}
    needs.update(options.get("resources", {}))
    return {name: amount for name, amount in needs.items() if amount}


def _describe_needs(needs: dict[str, float]) -> str:
    names = {"CPU": "num_cpus", "GPU": "num_gpus"}
    parts = []
    for name, amount in needs.items():
        if name == "memory":
            parts.append(f"memory_mb = {amount / 2**20:g}")
        else:
            parts.append(f"{names.get(name, name)} = {amount:g}")
    return ", ".join(parts)


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 1] + "…"


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the block (native code writes there directly)."""
    sys.stderr.flush()
    saved = os.dup(2)
    sink = os.open(os.devnull, os.O_WRONLY)
    os.dup2(sink, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(sink)


class RayDispatcher(Dispatcher):
    """Attempts run as Ray tasks, on a local instance started for the run or an existing cluster."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        schedule_timeout_s: float = 60.0,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        num_cpus: int | None = None,
    ) -> None:
        self.address = address or None
        self.schedule_timeout_s = schedule_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.num_cpus = num_cpus
        """CPUs of the local instance (default: this machine's)."""
        self._where = "a local Ray instance" if self.address is None else f"the Ray cluster at {self.address}"
        self._remote: Any = None
        self._connected = False
        self._nodes: list[dict[str, float]] = []
        self._nodes_at = float("-inf")
        self._stop = threading.Event()
        self._mock_attempts: dict[tuple[Any, int], int] = {}

    def describe(self) -> str:
        return self._where

    # ------------------------------------------------------------ connect

    def _target(self) -> str | None:
        """The address to join (``auto`` resolved from ``RAY_ADDRESS``), or None for a local instance."""
        if self.address is None:
            return None
        if self.address == "auto":
            return os.environ.get("RAY_ADDRESS") or "auto"
        return self.address

    def _probe(self, address: str) -> None:
        """Fail in seconds, with one line, when nothing listens at ``host:port``."""
        if "://" in address or address == "auto":
            return  # ray:// (Ray Client) and a local cluster file are Ray's to resolve
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise errors.BackendUnavailableError(
                f"bad Ray address {address!r}", hint="give host:port of the head node, e.g. 10.0.0.5:6379, or auto"
            )
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S).close()
        except OSError as exc:
            raise errors.BackendUnavailableError(
                f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}",
                hint="start it (ray start --head) or fix --ray-address / RADIUM_RAY_ADDRESS",
            ) from None

    def _init(self, ray: Any, target: str | None) -> None:
        # The driver prints the cluster's error notices ("(raylet) A worker died…") on
        # stdout, which belongs to the run's output (--json: events only). Radium reports
        # each of them as the attempt's error instead.
        import ray._private.worker as driver

        if hasattr(driver, "print_to_stdstream"):
            driver.print_to_stdstream = lambda data, ignore_prefix=False: None
        common = {"log_to_driver": False, "logging_level": logging.ERROR, "namespace": "radium"}
        if target is None:
            ray.init(address="local", include_dashboard=False, num_cpus=self.num_cpus, **common)
        else:
            ray.init(address=target, **common)

    async def start(self) -> None:
        try:
            import ray
        except ImportError:
            raise errors.MissingConfigurationError(
                "the ray backend needs Ray, which is not installed", hint='pip install "radium[ray]"'
            ) from None
        target = self._target()
        if target is not None:
            await asyncio.to_thread(self._probe, target)
        # ray.init may block for long on an address that accepts connections but is no
        # Ray head: it runs in a daemon thread, so the wait is bounded. (Off the main
        # thread it also leaves this process's SIGINT/SIGTERM handlers alone.) The
        # thread lives until aclose(): a local instance's processes die with the
        # thread that started them (PR_SET_PDEATHSIG), which is also what stops them
        # if this process is killed.
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def hold() -> None:
            try:
                self._init(ray, target)
            except BaseException as exc:  # reported by the awaiting side
                done.set_exception(exc)
                return
            done.set_result(None)
            self._stop.wait()

        try:
            # Ray's C++ client logs every failed try to stderr ("Failed to get cluster ID
            # from GCS server…"); a failure is reported below, in one line.
            with _quiet_stderr():
                threading.Thread(target=hold, name="radium-ray", daemon=True).start()
                await asyncio.wait_for(asyncio.wrap_future(done), self.connect_timeout_s)
        except (TimeoutError, Exception) as exc:
            self._stop.set()
            what = "start a local Ray instance" if target is None else f"connect to the Ray cluster at {target}"
            why = f"no answer within {self.connect_timeout_s:g} s" if isinstance(exc, TimeoutError) else _first_line(exc)
            raise errors.BackendUnavailableError(
                f"cannot {what}: {why}",
                hint="check the address and that the cluster runs the same Ray and Python versions",
            ) from None
        self._connected = True
        from radium.dispatch_ray_worker import run_attempt

        self._remote = ray.remote(run_attempt)
        try:
            nodes = self._capacity(refresh=True)
        except Exception as exc:  # connected, yet the node table cannot be read
            await self.aclose()
            raise errors.BackendUnavailableError(f"cannot read the Ray cluster's nodes: {_first_line(exc)}") from None
        if target is None:
            cpus = sum(node.get("CPU", 0) for node in nodes)
            self._where = f"a local Ray instance ({cpus:g} CPUs)"
        else:
            address = ray.get_runtime_context().gcs_address
            self._where = f"the Ray cluster at {address} ({len(nodes)} node{'s' if len(nodes) != 1 else ''})"

    async def aclose(self) -> None:
        if self._connected:
            import ray

            self._connected = False
            try:
                ray.shutdown()  # a local instance stops; a cluster ends this job's workers
            finally:
                self._stop.set()

    # ------------------------------------------------------------ attempts

    def _capacity(self, refresh: bool = False) -> list[dict[str, float]]:
        """Total resources of each alive node (cached for ``NODES_TTL_S``)."""
        now = time.monotonic()
        if refresh or now - self._nodes_at > NODES_TTL_S:
            import ray

            self._nodes = [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]
            self._nodes_at = now
        return self._nodes

    def _feasible(self, needs: dict[str, float], refresh: bool = False) -> bool:
        return any(
            all(node.get(name, 0) >= amount for name, amount in needs.items()) for node in self._capacity(refresh)
        )

    async def _until_feasible(self, call: AttemptCall, options: dict[str, Any]) -> None:
        needs = _needs(options)
        if self._feasible(needs):
            return
        # A local instance never grows; a cluster may (an autoscaler, a node starting).
        wait_s = 0.0 if self.address is None else self.schedule_timeout_s
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            if self._feasible(needs, refresh=True):
                return
        waited = f" within {wait_s:g} s (ray_schedule_timeout_s)" if wait_s else ""
        agent = call.settings.agent_id or "its agent"
        raise errors.UnschedulableTaskError(
            f"ray: no node of {self._where} has the resources task {call.task_id} asks for "
            f"({_describe_needs(needs)}){waited}",
            hint=f"add a node that has them, or change [agent.resources] of agent '{agent}'",
        )

    async def call(self, engine: "Engine", call: AttemptCall) -> "EngineResponse":
        import ray

        options = ray_options(call)
        await self._until_feasible(call, options)
        earlier = 0
        if call.settings.engine == "mock":  # its failure scripts count attempts per prompt
            key = (call.settings, hash(call.prompt))
            earlier = self._mock_attempts.get(key, 0)
            self._mock_attempts[key] = earlier + 1
        ref = self._remote.options(**options).remote(call, earlier)
        try:
            outcome = await ref
        except asyncio.CancelledError:
            # Ctrl+C, SIGTERM, the executor's time limit. A command agent's worker is
            # ended outright; its agents die with it (radium.dispatch_ray_worker).
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=call.settings.engine == "command")
            raise
        except ray.exceptions.RayError as exc:
            raise _map_ray_error(exc, call) from None
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def _map_ray_error(exc: BaseException, call: AttemptCall) -> errors.RadiumError:
    """A Ray failure in Radium's taxonomy (our own errors come back as values, not through here)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    what = f"ray: the attempt of {call.task_id}"
    if "TaskUnschedulableError" in names:
        return errors.UnschedulableTaskError(f"{what} cannot be scheduled: {_first_line(exc)}")
    if "RuntimeEnvSetupError" in names:
        return errors.BackendUnavailableError(f"{what} could not set up its runtime environment: {_first_line(exc)}")
    if names & set(_DIED):
        return errors.WorkerLostError(f"{what} lost its worker ({type(exc).__name__}): {_first_line(exc)}")
    cause = getattr(exc, "cause", None)
    if isinstance(cause, ImportError):
        return errors.MissingConfigurationError(
            f"{what} could not start on its node: {type(cause).__name__}: {cause}",
            hint="install radium (with the engines' extras) on every node of the cluster",
        )
    return errors.WorkerLostError(f"{what} failed in Ray ({type(exc).__name__}): {_first_line(exc)}")

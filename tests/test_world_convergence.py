"""Pretraining until converged: the probe's stopping rule, extensions, and what it never looks at.

The world's bases are probed with replay-only continuations; an unconverged base is replaced by its
first continuation and probed again. These tests drive ``_pretrain_until_converged`` with stand-in
models whose recall is set per prompt set, so each case's right answer is known in advance.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import imitlib.config
import imitlib.train.loop
import imitlib.world.calibration
import imitlib.world.pretrain
from imitlib.study import world as world_module

N = 20  # facts per prompt set


class Model:
    def __init__(self, level: int = 0):
        self.level = level  # how many continuations this stand-in has been trained with

    def eval(self):
        return self


def _prompts(kind: str) -> list[dict]:
    return [{"kind": kind, "i": i} for i in range(N)]


@pytest.fixture
def probe(monkeypatch):
    """Run the probe with recall(level) curves for the evaluation and the pool prompts."""
    trained_streams: list[int] = []

    def fake_train(model, rows, args, progress=False, desc=""):
        trained_streams.append(rows[0]["stream"])
        return SimpleNamespace(model=Model(model.level + 1))

    def run(eval_curve, pool_curve, max_gain=5.0, rounds=2, replicates=3, wordings="pool"):
        def fake_recall(model, tokenizer, prompts, batch_size=256):
            curve = eval_curve if prompts[0]["kind"] == "eval" else pool_curve
            hits = round(N * curve(model.level))
            return [{**p, "correct": i < hits} for i, p in enumerate(prompts)]

        monkeypatch.setattr(imitlib.train.loop, "train_causal_lm", fake_train)
        monkeypatch.setattr(imitlib.world.calibration, "fewshot_recall", fake_recall)
        monkeypatch.setattr(imitlib.world.pretrain, "pretraining_examples",
                            lambda sampler, tok, tokens, seq_len: [{"stream": sampler}] * (tokens // seq_len))
        monkeypatch.setattr(imitlib.world.pretrain, "losses_record", lambda result: {"steps": 1})
        monkeypatch.setattr(world_module, "make_sampler", lambda kb, settings, stream_seed: stream_seed)
        settings = imitlib.config.load(["params/smoke.yaml"], {
            "world.convergence_max_gain": max_gain, "world.convergence_max_rounds": rounds,
            "world.convergence_replicates": replicates, "world.convergence_replay_tokens": 640,
            "world.seq_len": 64, "world.convergence_wordings": wordings}).world
        training: dict = {}
        trained_streams.clear()
        model, recall, after, summary = world_module._pretrain_until_converged(
            Model(), "base", None, settings, None, 0, _prompts("eval"), _prompts("pool"), 100, training, False)
        return model, recall, after, summary, training, list(trained_streams)

    return run


def test_pool_rule_never_looks_at_the_evaluation_prompts(probe):
    # every continuation adds 50 pts on the evaluation prompts but nothing on the pool's wordings
    model, recall, after, summary, training, _ = probe(lambda level: min(1.0, 0.2 + 0.5 * level), lambda level: 0.4)
    assert model.level == 0 and summary["convergence_rounds"] == 0 and not training
    assert summary["pretrain_rows"] == 100
    assert [sum(r["correct"] for r in a) for a in after] == [14, 14, 14]  # the row reports the +50 it saw
    assert summary["convergence_probes"][0]["converged"]


def test_unconverged_base_is_pretrained_further_until_the_pool_gain_is_small(probe):
    # pool recall rises 10 pts per continuation up to level 2, then stays: converged at round 2
    model, recall, after, summary, training, streams = probe(lambda level: 0.3, lambda level: 0.2 + 0.1 * min(level, 2))
    assert model.level == 2 and summary["convergence_rounds"] == 2
    assert summary["pretrain_rows"] == 100 + 2 * 10  # two extensions of 640 tokens (10 rows of 64)
    assert sorted(training) == ["base-extension1", "base-extension2"]
    assert [p["converged"] for p in summary["convergence_probes"]] == [False, False, True]
    assert [p["pool_gains"] for p in summary["convergence_probes"]] == [[10.0] * 3, [10.0] * 3, [0.0] * 3]
    # every continuation reads its own fresh stream; round 0, replicate 0 is the earlier worlds' stream 3
    assert streams == [3, 103, 203, 1003, 1103, 1203, 2003, 2103, 2203]


def test_a_base_that_never_converges_stops_at_max_rounds_and_keeps_its_last_probe(probe):
    model, recall, after, summary, *_ = probe(lambda level: 0.1 * level, lambda level: 0.1 * level, rounds=1)
    assert model.level == 1 and summary["convergence_rounds"] == 1
    assert not summary["convergence_probes"][-1]["converged"]
    assert sum(r["correct"] for r in recall) == 2  # the final base's evaluation recall (level 1)
    assert all(sum(r["correct"] for r in a) == 4 for a in after)  # its continuations (level 2)


@pytest.mark.parametrize("max_gain, converged", [(5.01, True), (4.99, False)])
def test_mean_over_replicates_decides(probe, max_gain, converged):
    # one continuation adds 0 pts and the other 10 on the pool's wordings: the mean, 5, is compared
    calls = {"n": 0}

    def pool(level):
        if level == 0:
            return 0.5
        calls["n"] += 1
        return 0.5 if calls["n"] % 2 else 0.6

    _, _, _, summary, *_ = probe(lambda level: 0.5, pool, max_gain=max_gain, rounds=0, replicates=2)
    assert summary["convergence_probes"][0]["pool_gains"] == [0.0, 10.0]
    assert summary["convergence_probes"][0]["converged"] is converged


def test_evaluation_rule_extends_a_base_whose_evaluation_recall_still_climbs(probe):
    # world v5: the pool's wordings are flat, the evaluation's gain 30 pts per continuation up to level 1
    model, recall, after, summary, training, _ = probe(lambda level: 0.2 + 0.3 * min(level, 1), lambda level: 0.4,
                                                       wordings="evaluation")
    assert model.level == 1 and summary["convergence_rounds"] == 1 and sorted(training) == ["base-extension1"]
    probes = summary["convergence_probes"]
    assert [p["converged"] for p in probes] == [False, True]
    assert [p["evaluation_gain"] for p in probes] == [30.0, 0.0] and [p["pool_gain"] for p in probes] == [0.0, 0.0]
    assert {p["decided_on"] for p in probes} == {"evaluation"}
    assert sum(r["correct"] for r in recall) == 10  # the extended base's evaluation recall (level 1: 50%)


def test_evaluation_rule_still_requires_the_pool_wordings(probe):
    # flat on the evaluation prompts, climbing 10 pts on the pool's wordings: not converged under either rule
    for wordings in ("pool", "evaluation"):
        _, _, _, summary, *_ = probe(lambda level: 0.3, lambda level: 0.2 + 0.1 * level, rounds=0, wordings=wordings)
        assert not summary["convergence_probes"][0]["converged"], wordings


def test_unknown_convergence_wordings_are_refused_by_key():
    with pytest.raises(Exception, match="convergence_wordings"):
        imitlib.config.load(["params/smoke.yaml"], {"world.convergence_wordings": "unseen"})

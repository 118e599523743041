"""benchmarks/recall_noise.py: the ranked measure and the spread summary, on cases whose answers are known."""

import importlib.util
from types import SimpleNamespace

import pandas as pd
import pytest

from imitlib.config import PROJECT_ROOT

spec = importlib.util.spec_from_file_location("recall_noise", PROJECT_ROOT / "benchmarks" / "recall_noise.py")
recall_noise = importlib.util.module_from_spec(spec)
spec.loader.exec_module(recall_noise)


@pytest.fixture
def tokenizer():
    from imitlib.world.tokenizer import train_tokenizer

    return train_tokenizer(["Q: Where does Ana live? A: Paris Rome Oslo", "Q: What is Bo's colour? A: red blue",
                            "the of and"])


class LastTokenModel:
    """Next-token logits at every position set from a table {token: logit}; everything else -10."""

    def __init__(self, tokenizer, scores_per_prompt):
        self.tokenizer, self.scores = tokenizer, scores_per_prompt
        self.calls = 0

    def eval(self):
        return self

    def __call__(self, input_ids, attention_mask):
        import torch

        logits = torch.full((*input_ids.shape, len(self.tokenizer)), -10.0)
        for row in range(input_ids.shape[0]):
            for word, value in self.scores[self.calls + row].items():
                logits[row, :, self.tokenizer.convert_tokens_to_ids("\u0120" + word)] = value
        self.calls += input_ids.shape[0]
        return SimpleNamespace(logits=logits)


def test_ranked_recall_and_format_errors(tokenizer):
    values = {"city": ["Paris", "Rome", "Oslo"], "colour": ["red", "blue"]}
    prompts = [
        # the gold value leads among the attribute's values, but the word "the" leads overall: a format error
        {"prompt": "Q: Where does Ana live? A:", "attribute": "city", "gold": "Rome"},
        # a wrong value of the same attribute leads overall: stored wrong, no format error
        {"prompt": "Q: What is Bo's colour? A:", "attribute": "colour", "gold": "red"},
        # the gold value leads overall
        {"prompt": "Q: Where does Ana live? A:", "attribute": "city", "gold": "Oslo"},
    ]
    scores = [{"the": 5.0, "Rome": 3.0, "Paris": 1.0}, {"blue": 4.0, "red": 2.0, "of": 1.0}, {"Oslo": 2.0, "and": 1.0}]
    records = recall_noise.ranked_records(LastTokenModel(tokenizer, scores), tokenizer, prompts, values, batch_size=2)
    assert [r["ranked_correct"] for r in records] == [True, False, True]
    assert [r["top_is_value"] for r in records] == [False, True, True]


def test_a_value_that_is_not_one_token_is_named(tokenizer):
    with pytest.raises(ValueError, match="'city'"):
        recall_noise.ranked_records(LastTokenModel(tokenizer, [{}]), tokenizer,
                                    [{"prompt": "Q: A:", "attribute": "city", "gold": "Lima"}], {"city": ["Lima"]})


def test_summary_separates_replicate_spread_from_seed_spread(tmp_path):
    rows = []
    # seed 1: recall 10 and 20 (variance 50); seed 2: 30 and 40 (variance 50); seed means 15 and 35
    for seed, recalls in ((1, (10.0, 20.0)), (2, (30.0, 40.0))):
        for replicate, recall in enumerate(recalls):
            rows.append({"seed": seed, "base": "base-m", "tokens": 800, "replicate": replicate, "recall": recall,
                         "ranked_recall": 50.0, "format_errors": 0.0, "recall_qa_individuals": recall,
                         "recall_bio_only_individuals": recall, "heldout_loss": 1.0})
    assert recall_noise.main(["unused", "--merge", *_split(tmp_path, rows), "--results-dir", str(tmp_path / "out")]) == 0
    summary = pd.read_csv(tmp_path / "out" / "recall_noise_summary.csv").iloc[0]
    assert summary["recall_mean"] == 25.0
    assert summary["recall_sd_within_seed"] == pytest.approx(50 ** 0.5, abs=1e-3)
    assert summary["recall_sd_of_seed_means"] == pytest.approx(20 / 2 ** 0.5, abs=1e-3)
    assert summary["ranked_recall_sd_within_seed"] == 0.0
    assert (summary["seeds"], summary["replicates"]) == (2, 2)
    merged = pd.read_csv(tmp_path / "out" / "recall_noise.csv")
    assert list(merged["seed"]) == [1, 1, 2, 2]


def _split(folder, rows):
    """Write the rows as two raw files, as two processes would."""
    paths = []
    for i, part in enumerate((rows[2:], rows[:2])):
        path = folder / f"part{i}.csv"
        pd.DataFrame(part).to_csv(path, index=False)
        paths.append(str(path))
    return paths


def test_one_replicate_is_refused(tmp_path):
    with pytest.raises(SystemExit):
        recall_noise.main([str(tmp_path), "--seeds", "1", "--replicates", "1", "--results-dir", str(tmp_path / "out")])

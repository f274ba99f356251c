"""`mmsae train --help` is made from TrainConfig: every field has a flag whose help is the field's
docstring and whose default is the field's default, and a flag sets exactly its field."""

import argparse
import dataclasses

import pytest

from mmsae.cli.config_flags import field_docs, flag_name
from mmsae.cli.main import build_parser
from mmsae.cli.train_cmd import options_from_args
from mmsae.train.config import TrainConfig


def _train_parser() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["train"]


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

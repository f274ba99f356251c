"""Image files are served only from inside the store's image root."""

import os

import pytest

from mmsae.data.images import IMAGE_SUFFIXES, OutsideRoot, safe_file


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.png").write_bytes(b"png")
    (tmp_path / "secret.png").write_bytes(b"secret")
    (tmp_path / "notes.txt").write_text("x")
    os.symlink(tmp_path / "secret.png", root / "escape.png")
    os.symlink(root / "sub" / "a.png", root / "inside.png")
    os.symlink(tmp_path, root / "up")
    return root


def test_inside_files_resolve(tree):
    assert safe_file(tree, "sub/a.png", IMAGE_SUFFIXES) == (tree / "sub" / "a.png").resolve()
    assert safe_file(tree, str(tree / "sub" / "a.png"), IMAGE_SUFFIXES) is not None  # absolute but inside
    assert safe_file(tree, "inside.png", IMAGE_SUFFIXES) is not None  # a symlink that stays inside
    assert safe_file(tree, "sub/missing.png", IMAGE_SUFFIXES) is None


@pytest.mark.parametrize(
    "name",
    [
        "../secret.png",
        "sub/../../secret.png",
        "escape.png",
        "up/secret.png",
        "/etc/passwd",
        "file:///etc/passwd",
        "sub/a.png\x00.png",
        "",
        "../notes.txt",
    ],
)
def test_escapes_are_refused(tree, name):
    with pytest.raises(OutsideRoot):
        safe_file(tree, name, IMAGE_SUFFIXES)


def test_suffix_filter(tree):
    (tree / "sub" / "b.txt").write_text("t")
    with pytest.raises(OutsideRoot):
        safe_file(tree, "sub/b.txt", IMAGE_SUFFIXES)
    assert safe_file(tree, "sub/b.txt") is not None

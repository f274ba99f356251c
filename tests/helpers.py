"""Assertions several test modules share."""


def one_line_error(capsys, rc, *needles):
    """The command failed as a user mistake: exit 2 and one line on stderr (no traceback, no crash
    report) holding every needle. Returns that line."""
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    for n in needles:
        assert n in err, err
    return err


def snapshot(folder):
    """Every file of a folder with its bytes (None: the folder does not exist), to show nothing was written."""
    if not folder.exists():
        return None
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_same_codes(a, b, d_in: int, seed: int) -> None:
    """Two SAEs give the same codes on random inputs, and those codes are not all zero."""
    import torch

    x = torch.randn(32, d_in, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        za = a.encode(x)
        assert (za > 0).any()
        torch.testing.assert_close(b.encode(x), za, rtol=1e-6, atol=1e-6)

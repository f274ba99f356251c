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

"""Assertions shared by the tests of user-facing errors."""


def assert_one_line_error(code, err, *needles):
    """Exit code 2, exactly one `vwwtorch: error:` line containing every needle, no traceback."""
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.startswith("vwwtorch: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]

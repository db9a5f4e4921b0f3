"""The one assertion for a command that ends on one line: the exit code, exactly one non-empty line on
stderr (the `vwwtorch: error:` line, or `stopped:`/`interrupted`/`terminated` for signals) holding
every needle, and no traceback anywhere."""


def assert_one_line_error(code, err, *needles, exit_code=2, prefix="vwwtorch: error:"):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == exit_code, (code, err[-3000:])
    assert "Traceback" not in err, err[-3000:]
    assert len(lines) == 1, err[-3000:]
    assert lines[0].startswith(prefix), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]

"""One line of an error message, for the one-line reports of every command."""

MAX_CHARACTERS = 200


def last_line(text: str) -> str:
    """The last non-blank line of `text` (at most 200 characters), or "".

    ffmpeg's standard error and Python's messages end with their cause.
    """
    lines = text.strip().splitlines()
    return lines[-1][:MAX_CHARACTERS] if lines else ""


def error_line(error: BaseException, first: bool = False) -> str:
    """One line of an exception's message, or its type's name when it has none.

    Args:
        error: the exception.
        first: the first line rather than the last: TensorFlow's errors say
            their cause first and list graph nodes after it.
    """
    lines = str(error).strip().splitlines()
    if not lines:
        return type(error).__name__
    return (lines[0] if first else lines[-1])[:MAX_CHARACTERS]

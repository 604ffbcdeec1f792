"""The argument types and parser every `tfvae` command shares: a value a user can fix is
refused by argparse in one line, naming what was expected."""

import argparse

USAGE_ERROR = 2
INTERRUPTED = 130  # 128 + SIGINT, as shells report an interrupted command
# TensorFlow's sizes and seeds are 32-bit, TF Serving's and Triton's versions 64-bit: a
# larger number is a mistake to report here, not a traceback from deep inside.
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line that points at --help."""

    def error(self, message):
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def integer(text, low, high, expected):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
    return value


def positive_int(text):
    return integer(text, 1, INT32_MAX, f"a positive integer up to {INT32_MAX}")


def non_negative_int(text):
    return integer(text, 0, INT32_MAX, f"an integer in [0, {INT32_MAX}]")


def version(text):
    return integer(text, 1, INT64_MAX, f"a positive integer up to {INT64_MAX} (int64)")


def port(text):
    return integer(text, 1, 65535, "a TCP port in [1, 65535]")


def non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def positive_float(text):
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def rate(text):
    """A probability in [0, 1), such as a dropout rate."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a rate in [0, 1), got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a rate in [0, 1), got {text!r}")
    return value


def units(text):
    try:
        units = tuple(positive_int(part) for part in text.split(","))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive widths such as 512,256, got {text!r}"
        ) from None
    return units


def image_size(text):
    try:
        height, width = (positive_int(part) for part in text.split(","))
    except (argparse.ArgumentTypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected HEIGHT,WIDTH in pixels such as 32,32, got {text!r}") from None
    return height, width


def batch_delay(text):
    value = non_negative_float(text)
    if value > 1000:
        # A wait of seconds would hold every lone request that long: clients time out.
        raise argparse.ArgumentTypeError(f"expected milliseconds in [0, 1000], got {text!r}")
    return value

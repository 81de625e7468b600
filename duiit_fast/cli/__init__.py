"""The `duiit` command. User errors print one line on stderr and exit with status 2.

One module per group of verbs, each with its `add_parsers(sub)`: train.py (demo, train,
experiment), data.py (predict, translate, export, data check, phantoms), perf.py (bench, profile,
doctor)."""
from __future__ import annotations

import argparse
import sys

MAX_ERROR_CHARS = 500   # a refusal is one readable line, whatever value it quotes


class OneLineParser(argparse.ArgumentParser):
    """argparse's refusals (a missing option, a bad choice, a number that is not one) in the same
    one-line form as every other refusal, pointing to --help instead of printing the usage."""

    def error(self, message: str):
        self.exit(2, f"duiit: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    from . import data, perf, train
    p = OneLineParser(
        prog="duiit",
        description="DUIIT: translate MRI/PET slices into CT style with a translator trained jointly "
                    "with the CT predictor, and measure what it buys.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    train.add_parsers(sub)
    perf.add_parsers(sub)
    data.add_parsers(sub)
    return p


def error_line(exc: BaseException) -> str:
    from ..errors import printable
    text = printable(str(exc))
    if len(text) > MAX_ERROR_CHARS:
        text = f"{text[:MAX_ERROR_CHARS - 40]} ... ({len(text)} characters in all)"
    return f"duiit: error: {text}"


def main(argv=None) -> int:
    import logging
    from ..errors import DuiitError
    # torch.compile on a machine without CUDA imports torch.utils.cpp_extension, which warns that it
    # found no CUDA runtime: true, and nothing a duiit user can act on.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)   # `train --nproc` hands it to torchrun
    try:
        return args.func(args)
    except DuiitError as exc:
        print(error_line(exc), file=sys.stderr)
        return 2
    except OSError as exc:   # disk full, permission denied, a file where a folder should be
        print(error_line(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"duiit: interrupted ({INTERRUPTED.get(args.command, 'nothing half-written is left')})", file=sys.stderr)
        return 130


# What an interrupt leaves, per verb: training keeps its checkpoints, the writers their old folder.
INTERRUPTED = {"train": "completed checkpoints are kept; continue with --resume",
               "experiment": "finished cells are kept; run the same command to continue",
               "demo": "finished runs are kept",
               "bench": "no timing was written", "profile": "no trace was written"}


if __name__ == "__main__":
    sys.exit(main())

"""Command line tools of the workbook.

    python -m labs_utils inspect PATH [--json]
    python -m labs_utils convert SRC.pth DST.safetensors [--strip-prefixes] [--overwrite]

``inspect`` reports what a checkpoint holds without running code from it (exit status 0; 3 when
safe loading would refuse the file; 1 when it cannot be read). ``convert`` writes the weights of a
``.pth`` file as ``.safetensors``. Bad input gets one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_REFUSED = 0, 1, 2, 3


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m labs_utils",
        description="Inspect and convert PyTorch checkpoint files safely.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="{inspect,convert}")
    i = sub.add_parser(
        "inspect", help="report what a .pth/.pt/.safetensors file holds, running no code from it"
    )
    i.add_argument("path", help="checkpoint file")
    i.add_argument("--json", action="store_true", help="print the report as JSON")
    c = sub.add_parser("convert", help="write the weights of a .pth/.pt file as .safetensors")
    c.add_argument(
        "src", help="a torch.save file holding a state_dict or a checkpoint with a 'model' entry"
    )
    c.add_argument("dst", help="output file, ending in .safetensors")
    c.add_argument(
        "--strip-prefixes",
        action="store_true",
        help="remove the wrapper prefixes (module., _orig_mod.) that every key carries",
    )
    c.add_argument("--overwrite", action="store_true", help="replace dst if it exists")
    return p


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "inspect":
            from .inspector import inspect_checkpoint

            report = inspect_checkpoint(args.path)
            print(report.to_json() if args.json else report)
            if not report.safe_to_load:
                print(
                    f"error: {args.path}: safe loading (weights_only=True) refuses this file; it needs "
                    f"{', '.join(report.refused_globals) or 'globals it builds at load time'}; nothing in "
                    "it was run",
                    file=sys.stderr,
                )
                return EXIT_REFUSED
            return EXIT_OK
        from .convert import convert_to_safetensors

        result = convert_to_safetensors(
            args.src, args.dst, strip_prefixes=args.strip_prefixes, overwrite=args.overwrite
        )
        print(result)
        return EXIT_OK
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    # bad input; CheckpointError is a RuntimeError
    except (OSError, ValueError, TypeError, RuntimeError) as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:  # never a traceback on the command line
        print(f"error: unexpected {type(e).__name__}: {_one_line(e)}", file=sys.stderr)
        return EXIT_ERROR

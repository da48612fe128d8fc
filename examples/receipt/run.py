"""Read a till receipt into typed fields; the validators make the model re-read bad answers.

Usage:
    python examples/receipt/run.py examples/receipt/receipt.png

The endpoint and model come from the environment like the rest of viewfinder
(`OPENAI_API_KEY`; or `AZURE_OPENAI_ENDPOINT` + `AZURE_OPENAI_API_KEY` +
`AZURE_OPENAI_DEPLOYMENT`; or `OPENAI_BASE_URL` for a local server; `VIEWFINDER_MODEL`);
`--base-url`, `--model` and `--mode` override them. Prints the receipt as JSON, then the
derived checks. Exits 1 with the error message when viewfinder raises, for instance
when the answer still fails validation after `--max-reasks` re-asks.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import viewfinder as vf

try:
    from examples.receipt.schema import Receipt
except ModuleNotFoundError:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from examples.receipt.schema import Receipt

PROMPT = Path(__file__).parent / "prompt.j2"
MODES = ("tools", "json_schema", "json", "md_json")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line.

    Args:
        argv: Arguments without the program name; `None` reads `sys.argv`.

    Returns:
        The parsed options.
    """
    parser = argparse.ArgumentParser(description="Read a till receipt into typed fields.")
    parser.add_argument("image", help="path or http(s) URL of the receipt photo")
    parser.add_argument(
        "--max-reasks", type=int, default=2, help="re-asks after an invalid answer (default 2)"
    )
    parser.add_argument("--base-url", help="an OpenAI-compatible endpoint (default: from env)")
    parser.add_argument("--model", help="model or Azure deployment (default: VIEWFINDER_MODEL)")
    parser.add_argument("--mode", choices=MODES, help="structured-output mode (default: auto)")
    parser.add_argument("--no-cache", action="store_true", help="do not use viewfinder's cache")
    return parser.parse_args(argv)


def report(receipt: Receipt, usage: vf.Usage) -> list[str]:
    """The derived checks, one line each.

    Args:
        receipt: The validated receipt.
        usage: What the call cost; `reasks` counts answers the validators sent back.

    Returns:
        Lines to print after the JSON.
    """
    return [
        f"items: {len(receipt.items)}, sum {receipt.items_total} {receipt.currency}",
        f"total: {receipt.total} {receipt.currency} (matches the items)",
        f"requests: {usage.requests} (re-asks: {usage.reasks})",
    ]


def main(argv: list[str] | None = None) -> int:
    """Read the receipt and print it.

    Args:
        argv: Arguments without the program name; `None` reads `sys.argv`.

    Returns:
        0 on success, 1 when viewfinder raised (the message goes to stderr).
    """
    args = parse_args(argv)
    try:
        with vf.Analyzer(
            schema=Receipt,
            prompt=PROMPT,
            base_url=args.base_url,
            model=args.model,
            mode=args.mode,
            cache=not args.no_cache,
            max_reasks=args.max_reasks,
        ) as analyzer:
            run = analyzer.analyze_detailed(args.image)
    except vf.ViewfinderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(run.output.model_dump_json(indent=2))
    for line in report(run.output, run.usage):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

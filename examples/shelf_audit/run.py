"""Audit a store shelf: products, facings and empty slots, with boxes in pixels.

Usage:
    python examples/shelf_audit/run.py examples/shelf_audit/shelf.png [--store NAME]

The endpoint and model come from the environment like the rest of viewfinder
(`OPENAI_API_KEY`; or `AZURE_OPENAI_ENDPOINT` + `AZURE_OPENAI_API_KEY` +
`AZURE_OPENAI_DEPLOYMENT`; or `OPENAI_BASE_URL` for a local server; `VIEWFINDER_MODEL`);
`--base-url`, `--model` and `--mode` override them. Prints the audit as JSON, then the
derived checks. Exits 1 with the error message when viewfinder raises.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import viewfinder as vf

try:
    from examples.shelf_audit.schema import Shelf
except ModuleNotFoundError:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from examples.shelf_audit.schema import Shelf

PROMPT = Path(__file__).parent / "prompt.j2"
MODES = ("tools", "json_schema", "json", "md_json")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line.

    Args:
        argv: Arguments without the program name; `None` reads `sys.argv`.

    Returns:
        The parsed options.
    """
    parser = argparse.ArgumentParser(description="Audit the products and gaps on a shelf.")
    parser.add_argument("image", help="path or http(s) URL of the shelf photo")
    parser.add_argument("--store", default="", help="store name, passed to the prompt")
    parser.add_argument("--base-url", help="an OpenAI-compatible endpoint (default: from env)")
    parser.add_argument("--model", help="model or Azure deployment (default: VIEWFINDER_MODEL)")
    parser.add_argument("--mode", choices=MODES, help="structured-output mode (default: auto)")
    parser.add_argument("--no-cache", action="store_true", help="do not use viewfinder's cache")
    return parser.parse_args(argv)


def report(shelf: Shelf, usage: vf.Usage) -> list[str]:
    """The derived checks, one line each.

    Args:
        shelf: The audit, boxes in pixels.
        usage: What the call cost.

    Returns:
        Lines to print after the JSON.
    """
    counts = ", ".join(f"{name} x{facings}" for name, facings in shelf.count_by_name().items())
    return [
        f"facings: {counts or 'none'}",
        f"empty slots: {shelf.empty_slot_count}",
        f"needs restock: {'yes' if shelf.needs_restock else 'no'}",
        f"requests: {usage.requests} (re-asks: {usage.reasks})",
    ]


def main(argv: list[str] | None = None) -> int:
    """Run the audit and print it.

    Args:
        argv: Arguments without the program name; `None` reads `sys.argv`.

    Returns:
        0 on success, 1 when viewfinder raised (the message goes to stderr).
    """
    args = parse_args(argv)
    try:
        with vf.Analyzer(
            schema=Shelf,
            prompt=PROMPT,
            base_url=args.base_url,
            model=args.model,
            mode=args.mode,
            cache=not args.no_cache,
        ) as analyzer:
            run = analyzer.analyze_detailed(args.image, store=args.store)
    except vf.ViewfinderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(run.output.model_dump_json(indent=2))
    for line in report(run.output, run.usage):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

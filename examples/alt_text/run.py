"""Write alt text and a long description for an image, in a given language and level.

Usage:
    python examples/alt_text/run.py examples/alt_text/rocket.jpg \
        --language fr --reading-level simple

The endpoint and model come from the environment like the rest of viewfinder
(`OPENAI_API_KEY`; or `AZURE_OPENAI_ENDPOINT` + `AZURE_OPENAI_API_KEY` +
`AZURE_OPENAI_DEPLOYMENT`; or `OPENAI_BASE_URL` for a local server; `VIEWFINDER_MODEL`);
`--base-url`, `--model` and `--mode` override them. `--language` reaches both this
example's prompt and viewfinder's system prompt. Prints the answer as JSON, then the
derived checks. Exits 1 with the error message when viewfinder raises.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import get_args

import viewfinder as vf

try:
    from examples.alt_text.schema import ALT_MAX, AltText, ReadingLevel, problems
except ModuleNotFoundError:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from examples.alt_text.schema import ALT_MAX, AltText, ReadingLevel, problems

PROMPT = Path(__file__).parent / "prompt.j2"
MODES = ("tools", "json_schema", "json", "md_json")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line.

    Args:
        argv: Arguments without the program name; `None` reads `sys.argv`.

    Returns:
        The parsed options.
    """
    parser = argparse.ArgumentParser(description="Write alt text for an image.")
    parser.add_argument("image", help="path or http(s) URL of the image")
    parser.add_argument(
        "--language", default="en", help="language code of the text, e.g. en, fr, pt-BR"
    )
    parser.add_argument(
        "--reading-level",
        choices=get_args(ReadingLevel),
        default="standard",
        help="how technical the wording may be (default standard)",
    )
    parser.add_argument("--base-url", help="an OpenAI-compatible endpoint (default: from env)")
    parser.add_argument("--model", help="model or Azure deployment (default: VIEWFINDER_MODEL)")
    parser.add_argument("--mode", choices=MODES, help="structured-output mode (default: auto)")
    parser.add_argument("--no-cache", action="store_true", help="do not use viewfinder's cache")
    return parser.parse_args(argv)


def report(answer: AltText, args: argparse.Namespace, usage: vf.Usage) -> list[str]:
    """The derived checks, one line each.

    Args:
        answer: The validated answer.
        args: The options, for the language and level asked for.
        usage: What the call cost; `reasks` counts answers sent back for a fix.

    Returns:
        Lines to print after the JSON.
    """
    found = problems(answer, args.language, args.reading_level)
    return [
        f"alt text: {len(answer.alt)}/{ALT_MAX} characters",
        f"review: {'; '.join(found) if found else 'ok'}",
        f"requests: {usage.requests} (re-asks: {usage.reasks})",
    ]


def main(argv: list[str] | None = None) -> int:
    """Write the alt text and print it.

    Args:
        argv: Arguments without the program name; `None` reads `sys.argv`.

    Returns:
        0 on success, 1 when viewfinder raised (the message goes to stderr).
    """
    args = parse_args(argv)
    try:
        with vf.Analyzer(
            schema=AltText,
            prompt=PROMPT,
            base_url=args.base_url,
            model=args.model,
            mode=args.mode,
            cache=not args.no_cache,
        ) as analyzer:
            # the same variables fill this prompt and viewfinder's system prompt, so the
            # language also reaches the system message
            run = analyzer.analyze_detailed(
                args.image, language=args.language, reading_level=args.reading_level
            )
    except vf.ViewfinderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(run.output.model_dump_json(indent=2))
    for line in report(run.output, args, run.usage):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

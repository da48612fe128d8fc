"""Every code block of the README files runs as written (issue 18).

The blocks are found, not listed: every fenced block of `README.md` and of the READMEs
under `examples/` is a test, so a section added later is covered without touching this
file. Blocks of one README run in document order in one working directory, as a reader
following along would (`viewfinder batch` writes the `results.jsonl` that `cost --from`
reads). How each kind runs:

- `python`: executed in this process, in a fresh namespace, with the working directory
  first on `sys.path` (as `python -c` and the REPL put it).
- `bash` (and console lines starting with `$ ` in a plain block): a small interpreter of
  the shell the blocks use: `export`, `VAR=value cmd`, `&&`, `\\` continuations, comments
  and globs. `viewfinder ...` runs the command line in this process (Typer's runner);
  `python script.py ...` runs the script in this process. Anything else must be in
  `CANNOT_RUN`, with the reason.
- `json` parses; plain and `text` blocks are output, not run (their `$ ` lines are).

The model side is `viewfinder.testing.simulator` (NOT a model): a scripted server on
127.0.0.1 that answers any structured-output request with a placeholder instance of the
request's own JSON schema (`_placeholder`): "example" strings, one item per list, a box
over 10-60 % of the grid. The blocks' checks of what comes back are the library's own
validation and geometry; no output shown in a README was produced by a model.

The environment points at it the way a reader sets theirs (`OPENAI_BASE_URL`,
`OPENAI_API_KEY`, `COHERE_API_KEY`, Microsoft's sample variables `VISION_ENDPOINT` and
`VISION_KEY`), with `VIEWFINDER_MODE=json_schema`: the simulator is not OpenAI's host, so
viewfinder would otherwise put the schema in the prompt (`json` mode) where the scripted
server cannot read it. The files the blocks name are made in the working directory
(`_make_inputs`): images for image names, and the data files in `DATA_FILES`. Two stand-ins,
both visible here: `https://example.com/<name>` image URLs are served from the working
directory (no network in tests), and a block's `127.0.0.1:8080` / `localhost:8080` is a
`viewfinder serve` app this module starts on a free port.
"""

from __future__ import annotations

import glob
import json
import os
import re
import runpy
import shlex
import sys
import types
from collections.abc import Callable, Iterator
from contextlib import ExitStack, redirect_stdout
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from local_server import Serving
from PIL import Image, ImageDraw
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
READMES = [ROOT / "README.md", *sorted((ROOT / "examples").glob("**/README.md"))]

CANNOT_RUN: dict[tuple[str, str], str] = {
    # ("shell", a regex matched at the start of a command, its env assignments dropped)
    ("shell", r"pip install\b"): "installs packages: the suite runs in the environment "
    "they install",
    ("shell", r"pytest\b"): "runs a test suite: this suite, or a reader's own",
    ("shell", r"viewfinder serve\b"): "a server that runs until stopped, on a fixed port; "
    "tests/test_server.py, test_cli.py and test_server_entra.py start it",
    ("shell", r"curl\b"): "calls a running `viewfinder serve` with an image URL on the public "
    "internet; tests/test_vectorize.py sends these requests",
    ("shell", r"docker\b"): "needs a container engine, which CI does not have; "
    "tests/test_container.py runs the Dockerfile's entry point as a plain command",
    ("shell", r"openssl\b"): "makes a certificate for `serve --ssl-certfile`; tests make "
    "theirs with viewfinder.testing.entra.write_tls_certificate",
    # ("python", a regex searched in the block)
    ("python", r"from ultralytics import"): "ultralytics brings torch (gigabytes) and downloads "
    "yolo11n.pt; tests/test_proposals.py passes supervision-shaped proposals instead",
}
"""What cannot run here, and why: ONE list, each entry with its reason."""

IMAGE_NAME = re.compile(r"""(?<![\w/.:-])([\w./-]+\.(?:jpe?g|png|bmp|gif|tiff?|webp))\b""", re.I)
URL_IMAGE = re.compile(r"https://example\.com/([\w./-]+)")
PORT_8080 = re.compile(r"(127\.0\.0\.1|localhost):8080\b")
PHOTOS = ("photo1.jpg", "photo2.png", "street.jpg")
"""The images of the blocks' `photos/` directory."""
API_KEY = "my-long-random-key"  # the key the README's server blocks use


@dataclass(frozen=True)
class Block:
    """One fenced code block of a README."""

    readme: Path
    line: int
    lang: str
    text: str

    @property
    def name(self) -> str:
        return f"{self.readme.relative_to(ROOT)}:{self.line}-{self.lang or 'text'}"


FENCE = re.compile(
    r"^(?P<indent>[ ]*)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ ]*$", re.S | re.M
)


def readme_blocks(readme: Path) -> list[Block]:
    """The fenced blocks of `readme`, in order, dedented by their fence's indent."""
    text = readme.read_text(encoding="utf-8")
    blocks = []
    for match in FENCE.finditer(text):
        indent = len(match["indent"])
        body = "".join(line[indent:] for line in match["body"].splitlines(keepends=True))
        line = text.count("\n", 0, match.start()) + 1
        blocks.append(Block(readme, line, match["lang"].lower(), body))
    return blocks


BLOCKS = [block for readme in READMES for block in readme_blocks(readme)]


def _placeholder(schema: dict[str, Any], root: dict[str, Any], name: str = "") -> Any:
    """A placeholder instance of a JSON schema: what the scripted server answers.

    Strings are "example", numbers 90 % up their range, lists one item, and a list of
    four bounded integers (a box in the model's grid) covers 10-60 % of each side, so
    results have a box, a caption and an object to show.
    """
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return _placeholder(target, root, name)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [o for o in schema[key] if o.get("type") != "null"]
            return _placeholder(options[0], root, name)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next(k for k in kind if k != "null")
    if kind == "object":
        return {k: _placeholder(v, root, k) for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        items = schema.get("items", {})
        low, high = schema.get("minItems", 1), schema.get("maxItems")
        if low == high == 4 and items.get("type") in ("integer", "number"):
            top = items.get("maximum", 1000)
            return [top // 10, top // 10, top * 6 // 10, top * 6 // 10]
        count = max(1, low) if high is None else min(max(1, low), high)
        return [_placeholder(items, root, name) for _ in range(count)]
    if kind == "string":
        return "example"
    if kind in ("integer", "number"):
        value = (schema.get("minimum", 0) + schema.get("maximum", 100)) * 9 // 10
        return value if kind == "integer" else float(value)
    return False if kind == "boolean" else None


def _answer(body: dict[str, Any]) -> Any:
    """The simulator's answer to any request: for the examples' schemas the answers their
    tests script (hand-written for each example's image: a receipt's total must add up),
    else a placeholder of the request's response schema."""
    from test_examples import ALT_ANSWER, RECEIPT_ANSWER, SHELF_ANSWER

    schema = body["response_format"]["json_schema"]["schema"]
    for scripted in (ALT_ANSWER, RECEIPT_ANSWER, SHELF_ANSWER):
        if set(scripted) == set(schema.get("properties", {})):
            return scripted
    return _placeholder(schema, schema)


def _image(path: Path, size: tuple[int, int] = (640, 480)) -> None:
    """A small picture (a sky, a ground and a box) saved in the format its suffix names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, (120, 160, 210))
    draw = ImageDraw.Draw(image)
    width, height = size
    draw.rectangle((0, height * 2 // 3, width, height), fill=(90, 120, 60))
    draw.rectangle((width // 4, height // 3, width // 2, height * 3 // 4), fill=(200, 40, 40))
    image.save(path)


def _azure_json(size: tuple[int, int] = (640, 480)) -> dict[str, Any]:
    """A stored Image Analysis 4.0 result (what `compare --azure` reads)."""
    return {
        "modelVersion": "2023-10-01",
        "metadata": {"width": size[0], "height": size[1]},
        "captionResult": {"text": "a red box on the grass", "confidence": 0.8},
        "tagsResult": {"values": [{"name": "grass", "confidence": 0.9}]},
    }


def _coco(images: list[str]) -> dict[str, Any]:
    """A COCO detection file labelling one object per image."""
    return {
        "images": [
            {"id": i, "file_name": name, "width": 640, "height": 480}
            for i, name in enumerate(images, 1)
        ],
        "annotations": [
            {"id": i, "image_id": i, "category_id": 1, "bbox": [160, 160, 160, 200], "iscrowd": 0}
            for i in range(1, len(images) + 1)
        ],
        "categories": [{"id": 1, "name": "example"}],
    }


def _model_dir(path: Path) -> None:
    from viewfinder.testing.tiny_embed import write_tiny_model

    write_tiny_model(path)


def _photos(d: Path) -> None:
    for name in PHOTOS:
        _image(d / "photos" / name)


def _azure_results(d: Path) -> None:
    for name in PHOTOS:
        _write_json(d / "azure-results" / f"{Path(name).stem}.json", _azure_json())


def _lines(records: list[Any]) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


DATA_FILES: dict[str, Callable[[Path], None]] = {
    "photos/": _photos,
    "list.txt": lambda d: _write(d / "list.txt", "".join(f"photos/{n}\n" for n in PHOTOS)),
    "ids.jsonl": lambda d: _write(
        d / "ids.jsonl", _lines([{"id": n, "path": f"photos/{n}"} for n in PHOTOS])
    ),
    "azure-results/": _azure_results,
    "azure.jsonl": lambda d: _write(
        d / "azure.jsonl", _lines([{"image": n, "result": _azure_json()} for n in PHOTOS])
    ),
    "labels.json": lambda d: _write_json(d / "labels.json", _coco(list(PHOTOS))),
    "siglip2-b16": lambda d: _model_dir(d / "siglip2-b16"),
    "shop.schemas": lambda d: _write(d / "shop" / "schemas.py", SHOP_SCHEMAS),
}
"""The data files and directories the blocks name, made before they run."""


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _write_json(path: Path, data: Any) -> None:
    _write(path, json.dumps(data))


SHOP_SCHEMAS = """
from pydantic import BaseModel

import viewfinder as vf


class Product(BaseModel):
    name: str
    box: vf.BoundingBox


class Shelf(BaseModel):
    products: list[Product]
"""
"""A reader's own schemas module, as the CI block imports it (the "Custom schemas" Shelf)."""


def _make_inputs(workdir: Path, blocks: list[Block]) -> None:
    """Every image a block names (unless it exists), and every `DATA_FILES` entry."""
    for make in DATA_FILES.values():
        make(workdir)
    for block in blocks:
        named = IMAGE_NAME.findall(block.text) + URL_IMAGE.findall(block.text)
        for name in named:
            path = workdir / name
            inside = path.resolve().is_relative_to(workdir.resolve())  # never in the repo
            output = "out" in path.stem  # `--draw out.png`: written by the block, not read
            if inside and "*" not in name and not path.exists() and not output:
                _image(path)


@dataclass
class Reader:
    """A reader following one README: a working directory, and a server when a block
    needs one."""

    workdir: Path
    stack: ExitStack
    sim_url: str
    server: str | None = None

    def server_port(self) -> str:
        """The port of the `viewfinder serve` app standing in for a block's :8080."""
        if self.server is None:
            from viewfinder.compat.server import ServerSettings, create_app

            settings = ServerSettings(
                api_keys=(API_KEY,),
                analyzer_options={"base_url": self.sim_url, "api_key": "sk-sim", "cache": False},
            )
            serving = Serving(create_app(settings))
            self.stack.callback(serving.stop)
            self.server = serving.start()
        return self.server.rsplit(":", 1)[1]


@pytest.fixture(scope="module")
def readers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[Path, Reader]]:
    """One reader per README, sharing one simulator; the environment set for the module."""
    from viewfinder.testing.simulator import Simulator

    with ExitStack() as stack, pytest.MonkeyPatch.context() as patch:
        sim = stack.enter_context(Simulator(default=_answer, batch_polls=1))
        root_url = sim.base_url.removesuffix("/v1")
        for name in list(os.environ):
            if name.startswith(("AZURE_OPENAI_", "VIEWFINDER_", "OPENAI_")):
                patch.delenv(name)
        cache = tmp_path_factory.mktemp("readme-cache")
        env = {
            "OPENAI_BASE_URL": sim.base_url,
            "OPENAI_API_KEY": "sk-readme-placeholder",
            "VIEWFINDER_MODE": "json_schema",
            "VIEWFINDER_CACHE_DIR": str(cache),
            "COHERE_API_KEY": "cohere-readme-placeholder",
            "VIEWFINDER_EMBED_BASE_URL": root_url,
            "VISION_ENDPOINT": "https://my-resource.cognitiveservices.azure.com",
            "VISION_KEY": "any-key",
            "COLUMNS": "200",
            "NO_COLOR": "1",
        }
        for name, value in env.items():
            patch.setenv(name, value)
        made: dict[Path, Reader] = {}
        for readme in READMES:
            workdir = tmp_path_factory.mktemp(readme.parent.name or "readme")
            for top in ("tests", "examples"):  # the checkout's paths the blocks name
                (workdir / top).symlink_to(ROOT / top, target_is_directory=True)
            _make_inputs(workdir, [b for b in BLOCKS if b.readme == readme])
            made[readme] = Reader(workdir, stack, sim.base_url)
        patch.setattr("viewfinder.prepare.load.fetch_image", _example_com(made))
        yield made


def _example_com(made: dict[Path, Reader]) -> Any:
    """`fetch_image` for the blocks: `https://example.com/<name>` is the working
    directory's `<name>` (there is no network in tests); any other URL is refused."""

    def fetch(url: str, **_: Any) -> bytes:
        prefix = "https://example.com/"
        assert url.startswith(prefix), f"a README block fetched {url}: serve it here"
        return (Path.cwd() / url.removeprefix(prefix)).read_bytes()

    return fetch


def _cannot_run(text: str, *, command: bool) -> str | None:
    """The reason `text` (a shell command, else a Python block) cannot run, if listed."""
    for (kind, pattern), reason in CANNOT_RUN.items():
        if command and kind == "shell" and re.match(pattern, text):
            return reason
        if not command and kind == "python" and re.search(pattern, text):
            return reason
    return None


def _commands(block: Block) -> list[str]:
    """The shell lines of a block: continuations joined; for a plain block, its `$ ` lines."""
    text = block.text.replace("\\\n", " ")
    lines = text.splitlines()
    if block.lang in ("", "text", "console"):
        lines = [line.strip()[2:] for line in lines if line.strip().startswith("$ ")]
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def _run_command(reader: Reader, words: list[str], env: dict[str, str], where: str) -> None:
    """Run one command line: `viewfinder ...` or `python script.py ...`, in this process."""
    program, args = words[0], words[1:]
    expanded: list[str] = []
    for arg in args:
        matches = sorted(glob.glob(arg)) if any(c in arg for c in "*?[") else []
        expanded.extend(matches or [arg])
    if program == "viewfinder":
        from viewfinder.cli import app

        result = CliRunner().invoke(app, expanded, env=env)
        assert result.exit_code == 0, (
            f"{where}: `viewfinder {shlex.join(expanded)}` exited {result.exit_code}\n"
            f"{result.output}\n{result.exception!r}"
        )
        return
    if program == "python" and expanded and expanded[0].endswith(".py"):
        script = expanded[0]
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            patch.setattr(sys, "argv", expanded)
            patch.syspath_prepend(str(Path(script).resolve().parent))
            try:
                runpy.run_path(script, run_name="__main__")
            except SystemExit as done:
                assert done.code in (0, None), f"{where}: {script} exited {done.code}"
        return
    pytest.fail(f"{where}: `{program}` cannot run here: run it, or add it to CANNOT_RUN")


def _run_shell(reader: Reader, block: Block) -> tuple[int, list[str]]:
    """Run a shell block; how many commands ran, and the reasons of those that could not."""
    env: dict[str, str] = {}
    ran, skipped = 0, []
    for line in _commands(block):
        lexer = shlex.shlex(line, posix=True, punctuation_chars="&;|")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words = list(lexer)
        for command in _split(words, "&&"):
            local = dict(env)
            while command and re.fullmatch(r"[A-Za-z_]\w*=.*", command[0]):
                name, value = command.pop(0).split("=", 1)
                local[name] = value
            if command[:1] == ["export"]:
                env.update(arg.split("=", 1) for arg in command[1:])  # type: ignore[misc]
                continue
            reason = _cannot_run(shlex.join(command), command=True)
            if reason:
                skipped.append(reason)
                continue
            _run_command(reader, command, local, f"{block.name}: {line}")
            ran += 1
    return ran, skipped


def _split(words: list[str], separator: str) -> list[list[str]]:
    parts: list[list[str]] = [[]]
    for word in words:
        if word == separator:
            parts.append([])
        else:
            parts[-1].append(word)
    return [part for part in parts if part]


def _run_python(reader: Reader, block: Block) -> None:
    text = block.text
    if PORT_8080.search(text):
        text = PORT_8080.sub(rf"\1:{reader.server_port()}", text)
    module = types.ModuleType(f"readme_block_{block.line}")  # pydantic resolves names in it
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(reader.workdir))
        patch.setitem(sys.modules, module.__name__, module)
        code = compile(text, block.name, "exec")
        with redirect_stdout(StringIO()):
            exec(code, module.__dict__)


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.name)
def test_readme_block_runs(
    block: Block, readers: dict[Path, Reader], monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = readers[block.readme]
    monkeypatch.chdir(reader.workdir)
    if block.lang == "json":
        json.loads(block.text)
    elif block.lang == "python":
        reason = _cannot_run(block.text, command=False)
        if reason:
            pytest.skip(f"CANNOT_RUN: {reason}")
        _run_python(reader, block)
    elif block.lang in ("bash", "sh", "shell", "console", "", "text"):
        ran, skipped = _run_shell(reader, block)
        if skipped and not ran:
            pytest.skip(f"CANNOT_RUN: {'; '.join(dict.fromkeys(skipped))}")
    else:
        pytest.fail(f"{block.name}: a ```{block.lang} block: teach this test to run it")


def test_blocks_are_found() -> None:
    """The fence pattern finds indented blocks (inside list items) and every README."""
    names = [b.name for b in BLOCKS]
    assert any(b.lang == "python" and b.readme.name == "README.md" for b in BLOCKS)
    assert len({b.readme for b in BLOCKS}) == len(READMES)
    assert any("import FakeOpenAI" in b.text for b in BLOCKS), names  # inside a list item

"""Offline cost estimates: OpenAI's image-token rules, the request's text, the sums."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import instructor
import pytest
from endpoint_env import clear_endpoint_env
from pydantic import ValidationError

from viewfinder import ImageAnalyzer
from viewfinder.analyzers.base import schema_text
from viewfinder.analyzers.compact import AnswerFormat
from viewfinder.analyzers.examples import answer_text, example_answers, render_answer
from viewfinder.analyzers.features import ALL_FEATURES, Feature
from viewfinder.cost.estimate import (
    OFFLINE_BASE_URL,
    Estimate,
    PatchRule,
    TileRule,
    estimate_image_tokens,
    estimate_many,
    estimate_request,
    expected_output_tokens,
    image_token_rule,
    offline_analyzer,
    patch_count,
    prompt_cache_tokens,
    tile_count,
)
from viewfinder.cost.pricing import cost_of, load_prices
from viewfinder.cost.tokens import count_message_tokens, count_tokens
from viewfinder.errors import InvalidOptionError
from viewfinder.schemas.result import Usage
from viewfinder.testing.simulator import Simulator


@pytest.fixture(autouse=True)
def _nothing_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_endpoint_env(monkeypatch)


@pytest.fixture(scope="module")
def analyzer() -> Iterator[ImageAnalyzer]:
    """What `offline_analyzer` builds with nothing configured, shared (clients are slow)."""
    with ImageAnalyzer(
        base_url=OFFLINE_BASE_URL, cache=False, model="gpt-4.1-mini", mode="json_schema"
    ) as made:
        yield made


# --- OpenAI's documented worked examples -------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "detail", "tokens"),
    [
        (1024, 1024, "high", 765),  # 768x768: 4 tiles
        (2048, 4096, "high", 1105),  # 1024x2048, then 768x1536: 6 tiles
        (4096, 8192, "low", 85),  # low: the base only, whatever the size
        (1024, 1024, "auto", 765),  # auto is counted as high
        (1920, 1080, "high", 1105),  # reference table: 1365x768, 6 tiles
    ],
)
def test_tile_examples_gpt_4o(width: int, height: int, detail: Any, tokens: int) -> None:
    assert estimate_image_tokens(width, height, model="gpt-4o", detail=detail) == tokens


def test_tile_counts() -> None:
    assert tile_count(1024, 1024) == 4
    assert tile_count(2048, 4096) == 6
    assert tile_count(512, 512) == 1  # never scaled up
    assert tile_count(100, 3000) == 1 * 4  # fitted in 2048: 68x2048


def test_tile_rounding_matches_billing() -> None:
    """2049x513 fits as 2048x512.75 -> 513 (8 tiles); 2050x513 as 2048x512.5 -> 512 (4)."""
    assert estimate_image_tokens(2049, 513, model="gpt-4.1") == 85 + 170 * 8
    assert estimate_image_tokens(2050, 513, model="gpt-4.1") == 85 + 170 * 4


@pytest.mark.parametrize(
    ("width", "height", "patches"),
    [
        (1024, 1024, 1024),  # 32 x 32, under the budget
        (1800, 2400, 1452),  # 57 x 75 = 4275: shrunk to 1056x1408, 33 x 44
        (4000, 1474, 1449),  # OpenAI's documented shrink: 1997x736, 63 x 23
        (1024, 683, 704),  # README: a 3:2 photo at max_side 1024, 32 x 22
    ],
)
def test_patch_examples(width: int, height: int, patches: int) -> None:
    assert patch_count(width, height) == patches


@pytest.mark.parametrize(
    ("model", "width", "height", "tokens"),
    [
        ("gpt-4.1-mini", 1024, 1024, 1659),  # ceil(1024 x 1.62)
        ("gpt-4.1-mini", 1800, 2400, 2353),  # ceil(1452 x 1.62)
        ("gpt-4.1-nano", 1024, 1024, 2520),  # ceil(1024 x 2.46)
        ("gpt-4.1-nano", 1800, 2400, 3572),  # ceil(1452 x 2.46)
        ("o4-mini", 1024, 1024, 1762),  # ceil(1024 x 1.72)
        ("o4-mini", 1800, 2400, 2498),  # ceil(1452 x 1.72)
        ("gpt-5-mini", 1024, 1024, 1659),
        ("gpt-5-nano", 1024, 1024, 2520),
        ("gpt-4.1-mini", 1920, 1080, 2443),  # reference table (1,536 cap)
        ("gpt-4.1-mini", 1024, 683, 1141),  # README: 704 patches x 1.62
        ("gpt-4.1-mini", 100, 100, 26),  # 16 patches x 1.62 = 25.92: rounded up
    ],
)
def test_patch_tokens(model: str, width: int, height: int, tokens: int) -> None:
    assert estimate_image_tokens(width, height, model=model, detail="high") == tokens


@pytest.mark.parametrize(
    ("model", "tokens_1024"),
    [
        ("gpt-4o-mini", 2833 + 5667 * 4),  # 25,501 in the reference table
        ("gpt-4.1", 765),
        ("gpt-4.5-preview", 765),
        ("gpt-5", 70 + 140 * 4),
        ("gpt-5.1", 70 + 140 * 4),
        ("o1", 75 + 150 * 4),
        ("o3", 75 + 150 * 4),
    ],
)
def test_tile_families(model: str, tokens_1024: int) -> None:
    assert estimate_image_tokens(1024, 1024, model=model) == tokens_1024


def test_low_detail_is_the_base_on_tiles_and_changes_nothing_on_patches() -> None:
    assert estimate_image_tokens(1024, 1024, model="gpt-4o-mini", detail="low") == 2833
    assert estimate_image_tokens(1024, 1024, model="o3", detail="low") == 75
    assert estimate_image_tokens(1024, 1024, model="gpt-4.1-mini", detail="low") == 1659


@pytest.mark.parametrize(
    ("width", "height"),
    [
        (16000, 50),
        (16000, 100),
        (50, 16000),
        (16000, 16000),
        (3000, 2999),
        (1537 * 32, 32),
        (6144, 1024),  # sqrt(1536 x 6) = 96 exactly: 96 x 16 patches, the whole budget
    ],
)
def test_patch_budget_is_never_exceeded(width: int, height: int) -> None:
    assert 1 <= patch_count(width, height) <= 1536


def test_patch_shrink_is_exact_on_boundaries() -> None:
    assert patch_count(6144, 1024) == 1536
    assert patch_count(1024, 6144) == 1536


# --- model names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("openai/GPT-4o-2024-11-20", "gpt-4o"),
        ("chatgpt-4o-latest", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4.1-2025-04-14", "gpt-4.1"),
        ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
        ("gpt-4.1-nano", "gpt-4.1-nano"),
        ("gpt-4.5-preview-2025-02-27", "gpt-4.5"),
        ("gpt-5-2025-08-07", "gpt-5"),
        ("gpt-5-chat-latest", "gpt-5"),
        ("gpt-5-mini-2025-08-07", "gpt-5-mini"),
        ("gpt-5-nano", "gpt-5-nano"),
        ("gpt-5.1", "gpt-5.1"),
        ("o1-2024-12-17", "o1"),
        ("o3-2025-04-16", "o3"),
        ("o4-mini-2025-04-16", "o4-mini"),
    ],
)
def test_model_names_find_their_family(model: str, family: str) -> None:
    rule = image_token_rule(model)
    assert rule is not None
    assert rule.family == family


@pytest.mark.parametrize(
    "model", ["gpt-4-turbo", "o3-mini", "qwen2.5vl:7b", "gpt-4o-audio-preview", "prod-vision"]
)
def test_unknown_models_have_no_estimate(model: str) -> None:
    assert image_token_rule(model) is None
    assert estimate_image_tokens(1024, 1024, model=model) is None


def test_invalid_sizes_and_details_are_refused() -> None:
    with pytest.raises(InvalidOptionError):
        estimate_image_tokens(0, 100, model="gpt-4o")
    with pytest.raises(InvalidOptionError):
        estimate_image_tokens(100, 100, model="gpt-4o", detail="medium")  # type: ignore[arg-type]
    with pytest.raises(InvalidOptionError):
        patch_count(100, -1)


def test_the_table_names_its_sources() -> None:
    text = (resources.files("viewfinder") / "data" / "image_tokens.json").read_text("utf-8")
    data = json.loads(text)
    assert data["_checked"]
    assert "peers-and-costs.md section 4" in data["_source"]
    for entry in data["families"]:
        assert entry["source"], entry["family"]
        rule = image_token_rule(entry["family"])
        assert rule is not None and rule.family == entry["family"]
    assert isinstance(image_token_rule("gpt-4o"), TileRule)
    patch = image_token_rule("gpt-4.1-mini")
    assert isinstance(patch, PatchRule)
    assert (patch.patch_px, patch.max_patches, str(patch.multiplier)) == (32, 1536, "81/50")


# --- output sizes ------------------------------------------------------------------------


def _mean_tokens(features: tuple[Feature, ...], answer_format: AnswerFormat) -> int:
    """The mean, rounded up, of the example answers as the model writes them, counted."""
    counts = [
        count_tokens(answer_text(e.answer, features, answer_format)) for e in example_answers()
    ]
    assert min(counts) < max(counts)  # the examples differ: the mean is not one of them
    return -(-sum(counts) // len(counts))


@pytest.mark.parametrize("answer_format", ["compact", "verbose"])
def test_output_tokens_are_the_mean_of_the_example_answers(answer_format: AnswerFormat) -> None:
    assert len(example_answers()) >= 4
    for features in [(Feature.CAPTION,), (Feature.CAPTION, Feature.TAGS), ALL_FEATURES]:
        expected = _mean_tokens(features, answer_format)
        assert expected_output_tokens(features, answer_format=answer_format) == expected
    assert expected_output_tokens(["caption", "tags"]) == _mean_tokens(
        (Feature.CAPTION, Feature.TAGS), "compact"
    )


def test_the_compact_format_halves_the_verbose_output_on_the_example_answers() -> None:
    compact = expected_output_tokens(ALL_FEATURES, answer_format="compact")
    verbose = expected_output_tokens(ALL_FEATURES, answer_format="verbose")
    assert compact < 0.6 * verbose


def test_the_azure_sample_renders_as_the_issue_measured_it() -> None:
    """Microsoft's sample as the verbose answer JSON: 819 tokens in issue 12's measure."""
    sample = next(e for e in example_answers() if e.name == "azure-sample")
    text = json.dumps(render_answer(sample.answer, ALL_FEATURES, "verbose"), separators=(",", ":"))
    assert abs(count_tokens(text) - 819) <= 10


def test_the_prompt_cache_holds_1024_tokens_and_then_steps_of_128() -> None:
    assert prompt_cache_tokens(1023) == 0
    assert prompt_cache_tokens(1024) == 1024
    assert prompt_cache_tokens(1151) == 1024
    assert prompt_cache_tokens(1152) == 1152
    assert prompt_cache_tokens(3000) == 1024 + 15 * 128


# --- whole requests ----------------------------------------------------------------------


def test_offline_analyzer_needs_no_endpoint() -> None:
    with offline_analyzer("gpt-4.1-mini") as made:
        assert made.provider.endpoint == OFFLINE_BASE_URL
        assert made.provider.mode is instructor.Mode.JSON_SCHEMA
        assert made.engine.cache is None
        assert made.model == "gpt-4.1-mini"


def test_offline_analyzer_uses_a_configured_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1")
    with offline_analyzer("gpt-4o") as made:
        assert made.provider.endpoint == "http://127.0.0.1:11434/v1"
        assert made.provider.mode is instructor.Mode.JSON  # what real calls there would use


def test_estimate_request_counts_the_real_request(analyzer: ImageAnalyzer, cat_image: Path) -> None:
    estimate = estimate_request(analyzer, cat_image)

    prepared = analyzer.prepare(cat_image)
    request = analyzer.build(prepared, ALL_FEATURES)
    assert estimate.prompt_tokens == count_message_tokens(request.messages, model="gpt-4.1-mini")
    assert (estimate.width, estimate.height) == (451, 300)
    assert (estimate.model_width, estimate.model_height) == (451, 300)
    # 451x300: 15 x 10 = 150 patches x 1.62 = 243.
    assert estimate.image_tokens == 243
    assert estimate.output_tokens == expected_output_tokens(ALL_FEATURES)
    assert estimate.input_tokens == (
        estimate.prompt_tokens + estimate.schema_tokens + estimate.image_tokens
    )
    usage = Usage(input_tokens=estimate.input_tokens, output_tokens=estimate.output_tokens)
    assert estimate.cost_usd == pytest.approx(cost_of(usage, "gpt-4.1-mini"))
    assert estimate.batch_cost_usd == pytest.approx(estimate.cost_usd / 2)
    assert estimate.source == str(cat_image)
    assert estimate.notes == ()


def test_estimate_request_sends_nothing(sim: Simulator, cat_image: Path) -> None:
    with ImageAnalyzer(base_url=sim.base_url, cache=False, model="gpt-4o") as configured:
        estimate = estimate_request(configured, cat_image, ["caption"])
    assert estimate.image_tokens == 85 + 170 * 1  # 451x300: one tile
    assert sim.stats.total == 0
    assert sim.requests == []


@pytest.mark.parametrize("mode", ["json_schema", "tools", "json", "md_json"])
def test_schema_is_counted_in_every_mode(mode: str, cat_image: Path) -> None:
    with ImageAnalyzer(base_url=OFFLINE_BASE_URL, cache=False, model="gpt-4o", mode=mode) as made:
        estimate = estimate_request(made, cat_image)
        schema = count_tokens(
            schema_text(made.build(made.prepare(cat_image), ALL_FEATURES).response_model)
        )
    # The schema's JSON text, as instructor lays it out for the mode (indented in the
    # prompt for the JSON modes, compact in response_format / tools).
    assert 0.8 * schema <= estimate.schema_tokens <= 1.5 * schema


def test_fewer_features_cost_less(analyzer: ImageAnalyzer, cat_image: Path) -> None:
    everything = estimate_request(analyzer, cat_image)
    caption = estimate_request(analyzer, cat_image, ["caption"])
    assert caption.prompt_tokens < everything.prompt_tokens
    assert caption.schema_tokens < everything.schema_tokens
    assert caption.image_tokens == everything.image_tokens
    assert caption.features == (Feature.CAPTION,)
    assert caption.cost_usd is not None and everything.cost_usd is not None
    assert caption.cost_usd < everything.cost_usd


def test_prompt_options_change_the_prompt(analyzer: ImageAnalyzer, cat_image: Path) -> None:
    plain = estimate_request(analyzer, cat_image, ["caption"])
    neutral = estimate_request(analyzer, cat_image, ["caption"], gender_neutral_caption=True)
    assert neutral.prompt_tokens != plain.prompt_tokens
    one = estimate_request(analyzer, cat_image, ["smart_crops"])
    two = estimate_request(analyzer, cat_image, ["smart_crops"], smart_crops_aspect_ratios=[1, 1.5])
    assert two.output_tokens == one.output_tokens  # one region of interest, cropped twice


def test_detail_and_max_side_follow_the_analyzer(cat_image: Path) -> None:
    with offline_analyzer("gpt-4o", detail="low", max_side=128) as small:
        estimate = estimate_request(small, cat_image, ["tags"])
    assert estimate.detail == "low"
    assert (estimate.model_width, estimate.model_height) == (128, 85)
    assert estimate.image_tokens == 85


def test_a_prepared_image_is_used_as_is(analyzer: ImageAnalyzer, cat_image: Path) -> None:
    prepared = analyzer.prepare(cat_image)
    assert estimate_request(analyzer, prepared) == estimate_request(analyzer, cat_image)


def test_unknown_model_is_no_guess(analyzer: ImageAnalyzer, cat_image: Path) -> None:
    estimate = estimate_request(analyzer, cat_image, model="qwen2.5vl:7b")
    assert estimate.image_tokens is None
    assert estimate.input_tokens is None
    assert estimate.cost_usd is None and estimate.batch_cost_usd is None
    assert estimate.prompt_tokens > 0 and estimate.output_tokens > 0
    assert "no image-token rule" in estimate.notes[0]


def test_model_override(analyzer: ImageAnalyzer, cat_image: Path) -> None:
    """For an analyzer whose model is an Azure deployment name, say."""
    estimate = estimate_request(analyzer, cat_image, ["caption"], model="gpt-4o")
    assert estimate.model == "gpt-4o"
    assert estimate.image_tokens == 255


def test_model_without_a_price(
    analyzer: ImageAnalyzer, cat_image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(
        '{"models": {"gpt-4.1-mini": {"input": 0.4, "output": 1.6}}, "genai_prices": false}'
    )
    monkeypatch.setenv("VIEWFINDER_PRICES", str(prices))
    estimate = estimate_request(analyzer, cat_image, ["caption"], model="o3")
    assert estimate.image_tokens == 75 + 150
    assert estimate.input_tokens is not None
    assert estimate.cost_usd is None
    assert any("no price" in note for note in estimate.notes)
    assert any("reasoning" in note for note in estimate.notes)


def test_estimate_is_frozen(analyzer: ImageAnalyzer, cat_image: Path) -> None:
    estimate = estimate_request(analyzer, cat_image, ["caption"])
    with pytest.raises(ValidationError):
        estimate.output_tokens = 1  # type: ignore[misc]


def test_bad_options_are_refused(analyzer: ImageAnalyzer, cat_image: Path) -> None:
    with pytest.raises(InvalidOptionError):
        estimate_request(analyzer, cat_image, ["colour"])
    with pytest.raises(InvalidOptionError):
        estimate_request(analyzer, cat_image, smart_crops_aspect_ratios=[3.0])
    with pytest.raises(InvalidOptionError):
        estimate_request(analyzer, cat_image, language="english")


# --- sums --------------------------------------------------------------------------------


def _estimate(**changes: Any) -> Estimate:
    values: dict[str, Any] = {
        "source": "a.png",
        "model": "gpt-4.1-mini",
        "detail": "high",
        "features": (Feature.CAPTION,),
        "width": 1000,
        "height": 800,
        "model_width": 1000,
        "model_height": 800,
        "prompt_tokens": 300,
        "schema_tokens": 200,
        "image_tokens": 1000,
        "input_tokens": 1500,
        "output_tokens": 100,
        "prefix_tokens": 500,
        "cached_input_tokens": 0,
        "cost_usd": 0.001,
        "batch_cost_usd": 0.0005,
        "cached_cost_usd": 0.001,
        "batch_cached_cost_usd": 0.0005,
    }
    values.update(changes)
    return Estimate(**values)


def test_estimate_many_adds_up() -> None:
    summary = estimate_many(
        [_estimate(), _estimate(input_tokens=2500, output_tokens=300, cost_usd=0.003)]
    )
    assert summary.images == 2
    assert summary.models == ("gpt-4.1-mini",)
    assert summary.input_tokens == 4000
    assert summary.output_tokens == 400
    assert summary.cost_usd == pytest.approx(0.004)
    assert summary.batch_cost_usd == pytest.approx(0.001)
    assert summary.mean_input_tokens == 2000
    assert summary.mean_output_tokens == 200
    assert summary.mean_cost_usd == pytest.approx(0.002)
    assert summary.cost_per_1000_images_usd == pytest.approx(2.0)
    assert summary.batch_cost_per_1000_images_usd == pytest.approx(0.5)


def test_estimate_many_does_not_hide_unknowns() -> None:
    summary = estimate_many([_estimate(), _estimate(input_tokens=None, cost_usd=None)])
    assert summary.input_tokens is None
    assert summary.cost_usd is None
    assert summary.cost_per_1000_images_usd is None
    assert summary.batch_cost_usd == pytest.approx(0.001)
    assert summary.output_tokens == 200


def test_estimate_many_adds_the_best_case_apart() -> None:
    summary = estimate_many(
        [
            _estimate(cached_input_tokens=1024, cached_cost_usd=0.0007),
            _estimate(cached_input_tokens=0, cached_cost_usd=0.001),
        ]
    )
    assert summary.cached_input_tokens == 1024
    assert summary.cost_per_1000_images_usd == pytest.approx(1.0)
    assert summary.cached_cost_per_1000_images_usd == pytest.approx(0.85)
    assert summary.batch_cached_cost_per_1000_images_usd == pytest.approx(0.5)


def test_a_long_prefix_is_cached_in_the_best_case(cat_image: Path) -> None:
    with offline_analyzer("gpt-4.1-mini") as made:
        everything = estimate_request(made, cat_image)
        caption = estimate_request(made, cat_image, ["caption"])
    # Everything before the image: the same for every image of the plan.
    assert everything.prefix_tokens == everything.prompt_tokens + everything.schema_tokens
    assert everything.prefix_tokens >= 1024
    assert everything.cached_input_tokens == prompt_cache_tokens(everything.prefix_tokens)
    price = load_prices().price_for("gpt-4.1-mini")
    assert price is not None and everything.input_tokens is not None
    saved = everything.cached_input_tokens * (price.input - price.cached_input) / 1e6
    assert everything.cached_cost_usd == pytest.approx((everything.cost_usd or 0) - saved)
    assert everything.batch_cached_cost_usd == pytest.approx(everything.cached_cost_usd / 2)
    # A caption alone has a short prefix: nothing is cached, the best case is no better.
    assert caption.prefix_tokens < 1024
    assert caption.cached_input_tokens == 0
    assert caption.cached_cost_usd == caption.cost_usd


def test_estimate_many_of_nothing() -> None:
    summary = estimate_many([])
    assert summary.images == 0
    assert summary.input_tokens == 0 and summary.cost_usd == 0
    assert summary.mean_cost_usd is None and summary.cost_per_1000_images_usd is None


def test_per_1000_is_the_mean_times_1000() -> None:
    costs = [0.0011, 0.0023, 0.0042]
    summary = estimate_many(_estimate(cost_usd=cost) for cost in costs)
    assert summary.cost_per_1000_images_usd == pytest.approx(1000 * sum(costs) / len(costs))
    assert math.isclose(summary.cost_usd or 0, sum(costs))

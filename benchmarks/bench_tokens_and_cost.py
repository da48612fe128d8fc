"""Requests and input tokens per image (one combined request vs one per feature), and cost
per 1,000 images for each priced model, from viewfinder's estimator.

Run: python benchmarks/bench_tokens_and_cost.py [IMAGE]

Nothing is sent to any model: token counts come from viewfinder.cost.estimate (the exact
prompt and schema text counted with tiktoken's o200k_base, image tokens from each model
family's published rule, output tokens from viewfinder's example answers), prices from
viewfinder's price table. Azure's per-1,000 price is UNVERIFIED (see the reference notes).
"""

from __future__ import annotations

import sys
from pathlib import Path

from viewfinder.analyzers.features import ALL_FEATURES
from viewfinder.cost.estimate import estimate_request, offline_analyzer
from viewfinder.cost.pricing import load_prices

# Azure AI Vision S1, per 1,000 transactions: UNVERIFIED (shared/reference/peers-and-costs.md,
# "Comparators"): ~$1.00 for group-1 features (tags, ...), ~$1.50 for group-2 (OCR, objects...).
# Whether a 7-feature call bills as one transaction or one per feature is also unverified.
AZURE_PER_CALL = 1.50
AZURE_PER_FEATURE = {
    "tags": 1.00,
    "smart_crops": 1.00,
    "caption": 1.50,
    "dense_captions": 1.50,
    "objects": 1.50,
    "people": 1.50,
    "read": 1.50,
}


def main() -> None:
    image = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("tests/assets/rocket.jpg")
    analyzer = offline_analyzer("gpt-4.1-mini")
    combined = estimate_request(analyzer, image, ALL_FEATURES)
    per_feature = [estimate_request(analyzer, image, (f,)) for f in ALL_FEATURES]
    separate_input = sum(e.input_tokens or 0 for e in per_feature)
    print(f"{image} on gpt-4.1-mini, all seven features (estimates, no request sent)")
    print(f"  one combined request:   1 request,  {combined.input_tokens:>6,} input tokens")
    print(
        f"  one request per feature: {len(per_feature)} requests, {separate_input:>6,} input tokens"
        f"  = {separate_input / (combined.input_tokens or 1):.1f} x the combined request"
    )
    analyzer.close()

    print("\ncost per 1,000 images, all seven features, default settings (compact answers)")
    print(
        f"  {'model':<14}{'input tok':>10}{'cached':>8}{'output tok':>11}{'list $':>9}"
        f"{'batch $':>9}{'best $':>8}{'best batch $':>13}{'best vs Azure/call':>20}"
    )
    azure_per_feature = sum(AZURE_PER_FEATURE.values())
    for model in sorted(load_prices().models):
        model_analyzer = offline_analyzer(model)
        estimate = estimate_request(model_analyzer, image, ALL_FEATURES)
        model_analyzer.close()
        if estimate.cost_usd is None:
            continue
        per_1000 = estimate.cost_usd * 1000
        best = (estimate.cached_cost_usd or 0) * 1000
        print(
            f"  {model:<14}{estimate.input_tokens or 0:>10,}{estimate.cached_input_tokens:>8,}"
            f"{estimate.output_tokens:>11,}{per_1000:>9.2f}"
            f"{(estimate.batch_cost_usd or 0) * 1000:>9.2f}{best:>8.2f}"
            f"{(estimate.batch_cached_cost_usd or 0) * 1000:>13.2f}"
            f"{best / AZURE_PER_CALL:>19.2f}x"
        )
    print(
        f"  Azure AI Vision (UNVERIFIED list price): ${AZURE_PER_CALL:.2f} per 1,000 calls if a "
        f"call bills once; ${azure_per_feature:.2f} if each of the 7 features bills"
    )


if __name__ == "__main__":
    main()

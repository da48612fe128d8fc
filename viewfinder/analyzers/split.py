"""Who answers which feature of one call: this machine, the model, or both.

`ImageAnalyzer` answers every call through `SplitPath`, which wraps the model's path
(`ModelPath`, or `FallbackPath` with `fallback="local"`):

- the pixel features of the plan (`FeatureOptions.on_this_machine`: `color` and
  `image_type`, and `faces` where OpenCV is installed) are computed from the decoded
  image by the local engine, with no model; a call asking only those sends no request;
- the other features go to the model in ONE request, as before;
- a provider's content-filter refusal of a request that asked for the 3.2 `adult`
  section does not lose the image's other features: they are asked again, once, in one
  request without the adult section, and `adult` is made from the refusal itself
  (`adult_from_refusal`: the filter's categories set the flags, its words are the
  evidence). If that second request is refused too, the model's features stay `None`
  and are named in `unserved`; the pixel features and the adult flags are still given.

The pixel features are never cached (they are quick and deterministic); a source-cache
hit of the model's answer still decodes the image when a pixel feature is asked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from viewfinder.analyzers.features import Feature
from viewfinder.analyzers.flow import AnswerPath, Flow, Work
from viewfinder.engine.budget import Budget
from viewfinder.errors import ContentFilterError
from viewfinder.prepare.load import ImageInput, LoadedImage
from viewfinder.schemas.cv32 import AdultContent
from viewfinder.schemas.result import ImageAnalysisResult, ImageMetadata, Usage

if TYPE_CHECKING:
    from viewfinder.analyzers.image_analysis import FeatureOptions
    from viewfinder.build.plan import CallPlan

__all__ = ["Replan", "SplitPath", "adult_from_refusal"]

_SEXUAL = frozenset({"sexual", "sexual_minors"})
_VIOLENT = frozenset({"violence", "self_harm"})
_REFUSED = "the provider's content filter refused the image"


def adult_from_refusal(error: ContentFilterError) -> AdultContent:
    """The 3.2 adult section a content-filter refusal stands for.

    Azure OpenAI names the filtered categories: `sexual` sets the adult and racy flags,
    `violence` and `self_harm` the gore flag, each at score 1.0; the others stay 0. A
    refusal that names no category (OpenAI's `refusal`, a filter without details) sets
    all three: a moderation pipeline would rather hold back an image it cannot see
    than pass it. The refusal's message is the evidence.
    """
    named = set(error.categories)
    unexplained = not named & (_SEXUAL | _VIOLENT)
    sexual = unexplained or bool(named & _SEXUAL)
    violent = unexplained or bool(named & _VIOLENT)
    return AdultContent(
        is_adult_content=sexual,
        is_racy_content=sexual,
        is_gory_content=violent,
        adult_score=1.0 if sexual else 0.0,
        racy_score=1.0 if sexual else 0.0,
        gore_score=1.0 if violent else 0.0,
        filtered=True,
        evidence=str(error.message),
    )


Replan = Callable[
    ["FeatureOptions", tuple[Feature, ...]], "CallPlan[FeatureOptions, ImageAnalysisResult]"
]
"""The plan of the same call for fewer features (the content-filter retry)."""
Pixels = Callable[[LoadedImage, tuple[Feature, ...]], tuple[ImageMetadata, dict[str, Any]]]
"""The local engine's pixel features of an image, with its size."""


@dataclass(frozen=True)
class SplitPath:
    """Pixel features here, the rest by `model`, and the adult section's refusal answered.

    Attributes:
        load: Reads the image's bytes (the analyzer's `load`), once for both sides.
        model: The path that asks the model.
        pixels: Computes pixel features (`LocalEngine.pixels_of`).
        replan: Makes the plan of the same call for other features.
    """

    load: Callable[[ImageInput | LoadedImage], LoadedImage]
    model: AnswerPath[ImageAnalysisResult]
    pixels: Pixels
    replan: Replan

    def flow(
        self,
        plan: CallPlan[FeatureOptions, ImageAnalysisResult],
        image: ImageInput | LoadedImage,
        budget: Budget | None,
    ) -> Flow[ImageAnalysisResult]:
        """See `AnswerPath.flow`."""
        options = plan.options
        here = options.on_this_machine
        asked = options.model_features
        loaded: LoadedImage = yield Work(self.load, (image,))
        size: ImageMetadata | None = None
        parts: dict[str, Any] = {}
        if here or not asked:
            size, parts = yield Work(self.pixels, (loaded, here), decodes=(loaded.data, None))
        if not asked:
            assert size is not None
            return ImageAnalysisResult(model_version=plan.fingerprint, metadata=size, **parts)
        try:
            result: ImageAnalysisResult = yield from self.model.flow(plan, loaded, budget)
        except ContentFilterError as refusal:
            if Feature.ADULT not in asked:
                raise
            result = yield from self._without_adult(plan, loaded, budget, refusal, size)
        return result.model_copy(update=parts) if parts else result

    def _without_adult(
        self,
        plan: CallPlan[FeatureOptions, ImageAnalysisResult],
        loaded: LoadedImage,
        budget: Budget | None,
        refusal: ContentFilterError,
        size: ImageMetadata | None,
    ) -> Flow[ImageAnalysisResult]:
        """The other model features in one more request, and `adult` from `refusal`."""
        adult = adult_from_refusal(refusal)
        spent = refusal.usage or Usage()
        rest = tuple(f for f in plan.options.model_features if f is not Feature.ADULT)
        if rest:
            try:
                result: ImageAnalysisResult = yield from self.model.flow(
                    self.replan(plan.options, rest), loaded, budget
                )
                return result.model_copy(update={"adult": adult, "usage": spent + result.usage})
            except ContentFilterError as again:
                spent = spent + (again.usage or Usage())
        if size is None:
            size, _ = yield Work(self.pixels, (loaded, ()), decodes=(loaded.data, None))
        return ImageAnalysisResult(
            model_version=plan.fingerprint,
            metadata=size,
            usage=spent,
            adult=adult,
            unserved={f.value: _REFUSED for f in rest} or None,
        )

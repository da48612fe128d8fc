"""The 3.2 SDK's models, re-exported unchanged from
`azure.cognitiveservices.vision.computervision.models` (reference §9.7).

Microsoft's own classes, not copies: `viewfinder.azure.computervision.models.ImageAnalysis
is azure.cognitiveservices.vision.computervision.models.ImageAnalysis`, so attribute names,
enums (`VisualFeatureTypes`, `Details`, `OperationStatusCodes`...), `isinstance` checks and
`except ComputerVisionErrorResponseException` clauses work with either import path.
"""

from __future__ import annotations

from azure.cognitiveservices.vision.computervision import models as _models
from azure.cognitiveservices.vision.computervision.models import *  # noqa: F403

__all__ = list(_models.__all__)

"""How a question becomes an answer: custom schemas and the seven built-in features."""

from viewfinder.analyzers.base import BaseAnalyzer
from viewfinder.analyzers.custom import Analyzer
from viewfinder.analyzers.features import ALL_FEATURES, Feature
from viewfinder.analyzers.image_analysis import ImageAnalyzer

__all__ = ["ALL_FEATURES", "Analyzer", "BaseAnalyzer", "Feature", "ImageAnalyzer"]

"""Features computed on this machine, without a model endpoint (optional extra `local`).

`pip install 'viewfinder[local]'` brings the engines; each is imported on first use.

- `viewfinder.local.engine.LocalEngine`: what `ImageAnalyzer(engine="local")` runs
  (also `engine="auto"` without an endpoint, and `fallback="local"`).
- `viewfinder.local.people`: person boxes (OpenCV 4's HOG pedestrian detector, plus
  people grown from Haar-cascade faces).
- `viewfinder.local.faces`: Computer Vision 3.2's face rectangles (OpenCV 4's Haar
  cascades), the one face detector `people` also uses; `faces_available()` says whether
  OpenCV is installed.
- `viewfinder.local.saliency`: the smart-crop region of interest (spectral residual
  saliency, NumPy only).
- `viewfinder.local.color`: Computer Vision 3.2's Color and ImageType from the pixels,
  Pillow only: importable and working without the `local` extra.
"""

from viewfinder.local.read import TextRegion, detect_text_regions, locate_text_lines, read_text

__all__ = ["TextRegion", "detect_text_regions", "locate_text_lines", "read_text"]

"""Features computed on this machine, without a model endpoint (optional extra `local`).

`pip install 'viewfinder[local]'` brings the engines; each is imported on first use.

- `viewfinder.local.engine.LocalEngine`: what `ImageAnalyzer(engine="local")` runs
  (also `engine="auto"` without an endpoint, and `fallback="local"`).
- `viewfinder.local.people`: person boxes (OpenCV 4's HOG pedestrian detector, plus
  people grown from Haar-cascade faces).
- `viewfinder.local.saliency`: the smart-crop region of interest (spectral residual
  saliency, NumPy only).
"""

from viewfinder.local.read import read_text

__all__ = ["read_text"]

"""Stage 4, finish (pure): model answers to pixels of the original image."""

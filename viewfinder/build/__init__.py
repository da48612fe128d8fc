"""Stage 2, build (pure): prompt templates and the model-facing answer grid."""

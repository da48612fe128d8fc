"""Stage 1, prepare: an image input in, a validated `PreparedImage` out (load, the one URL
fetcher and its address policy, decode, the copy sent to the model, redaction).
"""

"""viewfinder."""

"""Compare viewfinder's results with stored Azure results, and report."""

"""The detection benchmark's labelled scenarios: clean traffic, injected faults, scoring.

Separate from the demo (``collector/demo``) on purpose: the benchmark must not share code paths with
the story the demo tells, so a change to the demo cannot make the benchmark easier.
"""

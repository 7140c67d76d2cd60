"""genre-tagger core library: audio, features, models, voting and refinement.

Everything here is plain Python/numpy/torch and never imports Ray; the Ray wiring lives in ``jobs/``.
"""

__version__ = "0.1.0"

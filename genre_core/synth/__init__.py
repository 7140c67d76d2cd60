"""Demo catalog generator: genre-wise composition -> MIDI -> FluidSynth -> recording effects.

``styles`` describes each genre (tempo, feel, harmony, instruments, patterns), ``compose`` turns a seeded
song plan into MIDI, ``render`` runs FluidSynth, ``effects`` simulates recording conditions and
``catalog`` ties them together per song. No Ray here; ``jobs/make_catalog.py`` runs songs in parallel.
"""

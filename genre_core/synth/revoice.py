"""Re-voicings: the same notes played by other timbres, the inputs of the GAN's training pairs
(``genre_core.synth.catalog.revoiced_spec`` renders them).

A re-voicing redraws each instrument within its General MIDI family and offsets each channel's synthesis
parameters (SoundFont generators, sent as NRPNs before the first note), so that a few soundfonts give many
timbres for one clean target.
"""

from __future__ import annotations

import mido
import numpy as np

from genre_core.synth.compose import DRUM_CHANNEL

REVOICE_PROBABILITY = 0.8


def revoice_programs(programs: dict[str, int], rng: np.random.Generator) -> dict[str, int]:
    """Each program, with probability REVOICE_PROBABILITY, becomes one drawn from its whole General MIDI family of 8
    (pianos, organs, guitars, basses, strings, ..., synth leads), itself included. Wider than the composer's
    swaps: the point is many timbres playing the same notes, not a plausible arrangement."""
    return {role: int(p // 8 * 8 + rng.integers(8)) if rng.random() < REVOICE_PROBABILITY else p
            for role, p in programs.items()}


# Synthesis parameters a re-voicing also varies, per channel: SoundFont 2.01 generator numbers -> (probability,
# lowest and highest offset, FluidSynth's NRPN scale). Offsets add to each preset's own values, so the same notes
# come out darker or brighter, resonant, swept, slow or fast to speak, with vibrato: timbres between and beyond the
# few soundfonts a corpus has. Drums take only the filter and the decay/release offsets.
GENERATOR_JITTER: dict[int, tuple[float, float, float, int]] = {
    8: (0.7, -4000, 1000, 2),    # filter cutoff, cents
    9: (0.4, 0, 240, 1),         # filter resonance (Q), centibels
    11: (0.3, 0, 4000, 2),       # modulation envelope -> filter cutoff, cents
    10: (0.2, 0, 2400, 2),       # modulation LFO -> filter cutoff, cents
    6: (0.25, 0, 40, 2),         # vibrato LFO -> pitch, cents
    34: (0.3, 0, 7000, 2),       # volume envelope attack, timecents
    36: (0.3, -2400, 2400, 2),   # volume envelope decay, timecents
    37: (0.3, 0, 300, 1),        # volume envelope sustain, centibels of attenuation
    38: (0.4, -2400, 3000, 2),   # volume envelope release, timecents
}
DRUM_GENERATORS = (8, 9, 36, 38)


def jitter_generators(rng: np.random.Generator) -> dict[int, dict[int, float]]:
    """A re-voicing's synthesis-parameter offsets: channel -> {generator: offset} (GENERATOR_JITTER), for the four
    melodic channels and the drums."""
    out: dict[int, dict[int, float]] = {}
    for channel in (0, 1, 2, 3, DRUM_CHANNEL):
        drawn = {}
        for gen, (p, low, high, _) in GENERATOR_JITTER.items():
            if channel == DRUM_CHANNEL and gen not in DRUM_GENERATORS:
                continue
            if rng.random() < p:
                drawn[gen] = float(rng.uniform(low, high))
        out[channel] = drawn
    return out


def generator_nrpns(offsets: dict[int, dict[int, float]]) -> list[mido.Message]:
    """The offsets as SoundFont 2.01 NRPNs, which FluidSynth adds to a channel's generators: NRPN MSB 120, LSB the
    generator, then 14-bit data centred on 8192 in the generator's NRPN steps (data entry LSB first: the MSB applies
    it). ``compose.to_midi(plan, notes, setup=...)`` sends them before the first note."""
    out = []
    for channel, gens in offsets.items():
        for gen, offset in gens.items():
            data = int(np.clip(8192 + round(offset / GENERATOR_JITTER[gen][3]), 0, 16383))
            out += [mido.Message("control_change", channel=channel, control=99, value=120),
                    mido.Message("control_change", channel=channel, control=98, value=gen),
                    mido.Message("control_change", channel=channel, control=38, value=data & 127),
                    mido.Message("control_change", channel=channel, control=6, value=data >> 7)]
    return out

"""Reversal: "0 w 0 reverse(w)", right-padded with 0; copy's sequences
(tasks/copy.py, same draws) with the second half reversed.

Tokens: 0 is the separator and the padding; the symbols of w are uniform
over 1..vocab_size-1. The weights are 1.0 on reverse(w) only.
"""
import dataclasses

from tasks.copy import TwoHalves
from tasks.registry import register


@register
@dataclasses.dataclass(frozen=True)
class Reversal(TwoHalves):
    """Reversal: "0 w 0 reverse(w)", right-padded with 0 (see TwoHalves)."""
    name = 'reversal'
    format = '0 w 0 reverse(w)'
    reverse = True

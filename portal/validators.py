"""The one rule for names people type: no invisible or direction-changing characters.

A name with a right-to-left override (U+202E) shows ``gateway-evil`` as something else in
every list, log and audit entry; a zero-width space makes two names that look the same
different rows. Every name field — organizations, gateways, groups, devices, device
types, enrollment — carries ``validate_name`` (model fields, so forms, the admin and the
API's serializers all apply it), and plain forms call it too.

Refused: Unicode's format characters (category Cf: the bidirectional embeddings,
overrides, isolates and marks, zero-width space/joiners, the BOM, soft hyphen …),
control characters (Cc, tab and newline included), private-use, surrogate and
unassigned code points. Letters, marks and symbols of every script stay allowed.
"""

import unicodedata

from django.core.exceptions import ValidationError
from django.utils.deconstruct import deconstructible

REFUSED_CATEGORIES = {"Cf", "Cc", "Co", "Cs", "Cn"}


def invisible_characters(value: str) -> list[str]:
    """The refused characters of ``value``, as ``U+202E`` labels, in order of appearance."""
    found = dict.fromkeys(
        f"U+{ord(ch):04X}" for ch in value if unicodedata.category(ch) in REFUSED_CATEGORIES
    )
    return list(found)


@deconstructible
class NameValidator:
    message = (
        "Names cannot contain invisible or text-direction characters ({characters}); "
        "type the name again without them."
    )
    code = "invisible_characters"

    def __call__(self, value):
        if not isinstance(value, str):
            return
        found = invisible_characters(value)
        if found:
            raise ValidationError(
                self.message.format(characters=", ".join(found[:5])), code=self.code
            )

    def __eq__(self, other):
        return isinstance(other, NameValidator)


validate_name = NameValidator()

"""Lab sections (haematology, biochemistry, ...): names and who may see what (pure).

The rule is :class:`Scope`; the store decides a person's scope
(:func:`lis_gateway.store.sections.scope_of`), the configuration names each
analyzer's section (``section = "haematology"``). No I/O here.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

#: The longest section name kept (``analyzers.section``, ``user_sections.section``).
SECTION_MAX = 100
#: The role that sees every section.
ADMIN = "admin"


def section_name(text: str) -> str:
    """A section name as it is kept: trimmed, NFC.

    Raises:
        ValueError: empty, longer than :data:`SECTION_MAX`, or holding a comma or a
            control character.
    """
    name = unicodedata.normalize("NFC", text.strip())
    if not name:
        raise ValueError("a section name must not be empty")
    if len(name) > SECTION_MAX:
        raise ValueError(f"a section name has at most {SECTION_MAX} characters")
    if "," in name:
        raise ValueError(f"a section name must not contain ',' (got {name!r})")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise ValueError("a section name must not contain control characters")
    return name


@dataclass(frozen=True, slots=True)
class Scope:
    """Which sections' results a person may see and act on.

    Attributes:
        everything: no section is configured, or the person is an admin.
        sections: the sections the person holds.
        in_use: some analyzer has a section (the worklist offers a section filter).
    """

    everything: bool
    sections: frozenset[str]
    in_use: bool

    def allows(self, section: str) -> bool:
        """Whether results of an analyzer in ``section`` ("" for none) are the person's."""
        return self.everything or section in self.sections


#: No restriction (a lab without sections; tests of other parts).
EVERYTHING = Scope(True, frozenset(), False)

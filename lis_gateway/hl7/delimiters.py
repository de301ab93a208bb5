"""HL7 v2 encoding characters and escape sequences (HL7 v2.5.1 §2.5, §2.7).

MSH-1 is the field separator and MSH-2 lists component, repetition, escape
and subcomponent separators (``^~\\&``; v2.7 adds a truncation character
``#``). Escape sequences use the declared escape character::

    \\F\\ field  \\S\\ component  \\T\\ subcomponent  \\R\\ repetition  \\E\\ escape
    \\Xhh...\\ hex bytes   (\\H\\ \\N\\ and other formatting sequences are kept as sent)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Hl7Delimiters:
    """The encoding characters of one message."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @property
    def encoding_characters(self) -> str:
        """MSH-2 as written."""
        return self.component + self.repetition + self.escape + self.subcomponent

    @classmethod
    def from_msh(cls, segment: str) -> tuple[Hl7Delimiters, list[str]]:
        """Read the delimiters from an MSH segment.

        Returns:
            The delimiters and warnings (a malformed MSH-2 falls back to ``^~\\&``).
        """
        if len(segment) < 4 or not segment.startswith("MSH"):
            return cls(), ["not an MSH segment; default delimiters used"]
        fs = segment[3]
        msh2 = segment[4:].split(fs, 1)[0]
        if len(msh2) < 4:
            return cls(field=fs), [f"MSH-2 {msh2!r} is short; default encoding characters used"]
        chars = (fs, *msh2[:4])
        if len(set(chars)) != 5 or any(c.isalnum() or c in "\r\n " for c in chars):
            return cls(), [f"encoding characters {''.join(chars)!r} are not distinct "
                           "punctuation; defaults used"]
        return cls(fs, msh2[0], msh2[1], msh2[2], msh2[3]), []

    def unescape(self, raw: str) -> str:
        """Decode escape sequences; unknown or unterminated ones are kept as sent."""
        esc = self.escape
        if esc not in raw:
            return raw
        simple = {"F": self.field, "S": self.component, "T": self.subcomponent,
                  "R": self.repetition, "E": self.escape}
        out: list[str] = []
        i, n = 0, len(raw)
        while i < n:
            c = raw[i]
            j = raw.find(esc, i + 1) if c == esc else -1
            if j < 0:
                out.append(c)
                i += 1
                continue
            seq = raw[i + 1:j]
            decoded = simple.get(seq)
            if decoded is None and len(seq) >= 3 and seq[0] == "X" and len(seq) % 2 == 1:
                try:
                    decoded = bytes.fromhex(seq[1:]).decode("latin-1")
                except ValueError:
                    decoded = None
            if decoded is None:
                out.append(raw[i:j + 1])
            else:
                out.append(decoded)
            i = j + 1
        return "".join(out)

    def escape_text(self, text: str) -> str:
        """Encode ``text`` so it can stand inside one (sub)component."""
        e = self.escape
        table = {e: f"{e}E{e}", self.field: f"{e}F{e}", self.component: f"{e}S{e}",
                 self.subcomponent: f"{e}T{e}", self.repetition: f"{e}R{e}"}
        if not any(c in text for c in table):
            return text
        return "".join(table.get(c, c) for c in text)

    def repeats(self, raw: str) -> list[str]:
        """Split a raw field into its (still escaped) repetitions."""
        return raw.split(self.repetition)

    def components(self, raw: str) -> list[str]:
        """Components of the first repetition, escapes decoded (subcomponents kept)."""
        first = raw.split(self.repetition, 1)[0]
        return [self.unescape(c) for c in first.split(self.component)]

    def component_at(self, raw: str, index: int) -> str:
        """Component ``index`` (1-based) of the first repetition, or ``""``."""
        comps = self.components(raw)
        return comps[index - 1] if 0 < index <= len(comps) else ""

    def text(self, raw: str) -> str:
        """The whole field with escapes decoded, delimiters kept as sent."""
        if self.escape not in raw:
            return raw
        return self.repetition.join(
            self.component.join(
                self.subcomponent.join(self.unescape(s) for s in comp.split(self.subcomponent))
                for comp in rep.split(self.component))
            for rep in raw.split(self.repetition))

    def build_field(self, repeats: list[list[str]]) -> str:
        """A raw field from plain-text components (each escaped)."""
        return self.repetition.join(
            self.component.join(self.escape_text(c) for c in comps) for comps in repeats)


DEFAULT = Hl7Delimiters()

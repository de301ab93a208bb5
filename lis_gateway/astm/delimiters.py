"""E1394 delimiters and escape sequences.

The field delimiter is the character right after ``H``; the next three are
repeat, component and escape (E1394 §6.6). ``|\\^&`` is the default, but
``|`^&`` (Erba) and ``|@^\\`` (Cepheid GeneXpert) are real. Escape sequences
use whichever escape character the header declares::

    &F& field   &S& component   &R& repeat   &E& escape   &Xhhhh& hex
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Delimiters:
    """The four delimiters of one message."""

    field: str = "|"
    repeat: str = "\\"
    component: str = "^"
    escape: str = "&"

    @property
    def definition(self) -> str:
        """H-2 as written: repeat, component, escape."""
        return self.repeat + self.component + self.escape

    @classmethod
    def from_header(cls, header: str) -> tuple[Delimiters, list[str]]:
        """Read the delimiters from an H record.

        Args:
            header: the H record text (without its CR).

        Returns:
            The delimiters and a list of warnings (empty when the header is
            standard). An unusable definition falls back to the default.
        """
        warnings: list[str] = []
        text = header.lstrip()
        if len(text) < 2 or text[0] != "H":
            return cls(), ["not a header record; default delimiters used"]
        fd = text[1]
        definition = text[2:].split(fd, 1)[0]
        if len(definition) == 4 and definition[0] == definition[1] == "\\":
            warnings.append(f"doubled backslash in delimiter field {definition!r}; read as "
                            f"{definition[1:]!r}")
            definition = definition[1:]
        if len(definition) != 3:
            warnings.append(f"delimiter field {definition!r} is not 3 characters; "
                            "default delimiters used")
            return cls(field=fd if not fd.isalnum() else "|"), warnings
        candidate = cls(fd, definition[0], definition[1], definition[2])
        chars = (fd, *definition)
        if len(set(chars)) != 4 or any(c.isalnum() or c in "\r\n " for c in chars):
            warnings.append(f"delimiters {''.join(chars)!r} are not distinct punctuation; "
                            "default delimiters used")
            return cls(), warnings
        return candidate, warnings

    def unescape(self, raw: str) -> str:
        """Decode escape sequences in one component.

        Unknown or unterminated sequences are kept as they are.
        """
        esc = self.escape
        if esc not in raw:
            return raw
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
            decoded = self._decode_sequence(seq)
            if decoded is None:
                out.append(c)
                i += 1
                continue
            out.append(decoded)
            i = j + 1
        return "".join(out)

    def _decode_sequence(self, seq: str) -> str | None:
        simple = {"F": self.field, "S": self.component, "R": self.repeat, "E": self.escape}
        if seq in simple:
            return simple[seq]
        if len(seq) >= 3 and seq[0] == "X" and len(seq) % 2 == 1:
            try:
                return bytes.fromhex(seq[1:]).decode("latin-1")
            except ValueError:
                return None
        return None

    def escape_text(self, text: str) -> str:
        """Encode ``text`` so it can stand inside one component."""
        table = {self.escape: f"{self.escape}E{self.escape}",
                 self.field: f"{self.escape}F{self.escape}",
                 self.component: f"{self.escape}S{self.escape}",
                 self.repeat: f"{self.escape}R{self.escape}"}
        return "".join(table.get(c, c) for c in text)

    def repeats(self, raw: str) -> list[str]:
        """Split a raw field into its (still escaped) repeats."""
        return raw.split(self.repeat)

    def components(self, raw: str) -> list[str]:
        """Components of the first repeat of a raw field, escapes decoded."""
        first = raw.split(self.repeat, 1)[0]
        return [self.unescape(c) for c in first.split(self.component)]

    def build_field(self, repeats: list[list[str]]) -> str:
        """Build a raw field from plain-text components (escaping them)."""
        return self.repeat.join(
            self.component.join(self.escape_text(c) for c in comps) for comps in repeats)

    def text(self, raw: str) -> str:
        """The whole field with escapes decoded and delimiters kept as sent."""
        if self.escape not in raw:
            return raw
        # decode component by component so that decoded delimiters do not
        # get confused with real ones in the result
        return self.repeat.join(
            self.component.join(self.unescape(c) for c in rep.split(self.component))
            for rep in raw.split(self.repeat))


DEFAULT = Delimiters()

"""Languages of the web app: Vietnamese by default, English selectable.

The message catalogues are the gettext ``.po`` files under ``locale/``
(``locale/<lang>/LC_MESSAGES/messages.po``), read with Babel when the app
starts: there is no compile step and no ``.mo`` file to keep in step.
Message ids are the English texts; a message missing from a catalogue
shows its English id (a test checks that every message used by the
templates and the code is translated in both catalogues).

Times are shown in the laboratory's zone (Asia/Ho_Chi_Minh by default):
``dd/MM/yyyy HH:mm`` in Vietnamese, ``dd MMM yyyy HH:mm`` in English.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LANGUAGES = ("vi", "en")
DEFAULT_LANGUAGE = "vi"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
#: Each language's name in itself, for the switch.
LANGUAGE_NAMES = {"vi": "Tiếng Việt", "en": "English"}
_PATTERNS = {"vi": "dd/MM/yyyy HH:mm", "en": "dd MMM yyyy HH:mm"}
_DATE_PATTERNS = {"vi": "dd/MM/yyyy", "en": "dd MMM yyyy"}


def language(value: str | None) -> str:
    """A supported language code, or the default."""
    return value if value in LANGUAGES else DEFAULT_LANGUAGE


def load_catalogue(lang: str, directory: Path = LOCALE_DIR) -> Translations:
    """Read one language's ``messages.po`` into gettext translations.

    Raises:
        OSError: the file is missing.
    """
    path = directory / lang / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=lang)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer)


@dataclass(frozen=True, slots=True)
class Locale:
    """One language's texts and time formats.

    Attributes:
        lang: ``vi`` or ``en``.
        translations: its catalogue.
        zone: the laboratory's time zone.
    """

    lang: str
    translations: Translations
    zone: ZoneInfo

    def gettext(self, message: str) -> str:
        """The translation of ``message`` (itself when it has none)."""
        return str(self.translations.gettext(message))

    def datetime(self, value: datetime | None) -> str:
        """A time in the laboratory's zone ("" for None)."""
        if value is None:
            return ""
        return format_datetime(value.astimezone(self.zone), _PATTERNS[self.lang],
                               locale=self.lang)

    def iso(self, text: str) -> str:
        """A time kept as ISO 8601 text (the audit log's), shown like :meth:`datetime`."""
        try:
            return self.datetime(datetime.fromisoformat(text)) if text else ""
        except ValueError:
            return text

    def day(self, value: date | None) -> str:
        """A calendar day such as a birth date ("" for None)."""
        if value is None:
            return ""
        return format_date(value, _DATE_PATTERNS[self.lang], locale=self.lang)


def load_locales(zone: str = "Asia/Ho_Chi_Minh",
                 directory: Path = LOCALE_DIR) -> dict[str, Locale]:
    """Every supported language, read once at start."""
    tz = ZoneInfo(zone)
    return {lang: Locale(lang, load_catalogue(lang, directory), tz) for lang in LANGUAGES}

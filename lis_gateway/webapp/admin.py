"""What the administration pages share: what they are given, and who may use them.

:class:`AdminSetup` is what the composition root gives the app besides the
store (``webapp_resource(..., admin=...)``): the links' status board, where
wire recordings are, the live mapping tables with the drivers and rules
that reprocessing needs, and the configured destinations. A page whose part
is missing says so instead of failing.

:class:`RolePage` adds the role check to :class:`~.accounts.Page`: a
person without one of the page's roles gets a 403 page naming the roles
that may use it (the session and CSRF checks come first, so a POST
without a token is refused before anything else).

Who may use what:

==================  ===================================  ====================
page                read                                 act
==================  ===================================  ====================
mapping problems    admin                                admin (fix, reprocess)
analyzers           admin, technician (status only)      --
wire recording      admin                                --
delivery            admin                                admin (retry)
audit               admin, doctor                        --
==================  ===================================  ====================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from twisted.web.server import Request

from drivers import DriverSpec
from lis_gateway.link_status import LinkStatusBoard
from lis_gateway.mapping_files import LiveTables
from lis_gateway.rules import RuleSet

from .accounts import Page
from .sessions import Session
from .web import ROLE_LABELS, WebContext

ADMIN = frozenset({"admin"})


@dataclass(frozen=True, slots=True)
class MappingSetup:
    """What fixing a mapping table and reprocessing need.

    Attributes:
        tables: the tables in use (the store sinks read them at every message).
        specs: each configured analyzer's driver, by analyzer name.
        rules: the autoverification rules (None: every result is held).
        needs_order: by analyzer name, whether its results need a HIS order.
    """

    tables: LiveTables
    specs: Mapping[str, DriverSpec]
    rules: RuleSet | None = None
    needs_order: Mapping[str, bool] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AdminSetup:
    """What the administration pages are given (each part optional).

    Attributes:
        status: the links' status board (None: the gateway runs no links here).
        record_dir: where the links' wire recordings are (None: not recorded).
        encodings: each link's character encoding, for showing recordings.
        mapping: the live mapping tables and what reprocessing needs.
        destinations: the configured ``[[destinations]]`` names.
    """

    status: LinkStatusBoard | None = None
    record_dir: Path | None = None
    encodings: Mapping[str, str] = field(default_factory=dict)
    mapping: MappingSetup | None = None
    destinations: tuple[str, ...] = ()


class RolePage(Page):
    """A page for some roles: ``readers`` may GET (``read``), ``writers`` may POST (``act``)."""

    readers: frozenset[str] = ADMIN
    writers: frozenset[str] = ADMIN

    def __init__(self, ctx: WebContext, setup: AdminSetup) -> None:
        super().__init__(ctx)
        self.setup = setup

    def get(self, request: Request, session: Session | None) -> bytes | int:
        assert session is not None
        if not session.roles & self.readers:
            return self.forbidden(request, session, self.readers)
        return self.read(request, session)

    def post(self, request: Request, session: Session) -> bytes | int:
        if not session.roles & self.writers:
            return self.forbidden(request, session, self.writers)
        return self.act(request, session)

    def read(self, request: Request, session: Session) -> bytes | int:
        """Answer a permitted GET (the default: 405)."""
        request.setHeader(b"Allow", b"POST")
        return self.ctx.refuse(request, session, 405, "POST only")

    def act(self, request: Request, session: Session) -> bytes | int:
        """Answer a permitted POST with a valid token (the default: 405)."""
        request.setHeader(b"Allow", b"GET")
        return self.ctx.refuse(request, session, 405, "GET only")

    def forbidden(self, request: Request, session: Session, roles: frozenset[str]) -> bytes:
        """403: the page names the roles that may do this."""
        gettext = self.ctx.locales[session.lang].gettext
        self.ctx.log.warning("webapp-forbidden", user=session.username,
                             page=request.path.decode("ascii", "replace"))
        names = ", ".join(gettext(ROLE_LABELS.get(r, r)) for r in sorted(roles))
        return self.ctx.refuse(request, session, 403, gettext(
            "This page is only for: {roles}. Ask an administrator if you need it."
        ).format(roles=names))

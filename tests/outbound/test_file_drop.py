"""The file destination's write: atomic, idempotent for the same bytes, never overwriting."""

from __future__ import annotations

from pathlib import Path

from lis_gateway.outbound.delivery import DeliveryStatus
from lis_gateway.outbound.file_drop import write_once


def test_a_payload_is_written_once_and_a_resend_is_recognised(tmp_path: Path) -> None:
    """First write delivers; the same bytes again are 'already written'; no temp file left."""
    assert write_once(tmp_path, "LG1.hl7", b"MSH|1") == (DeliveryStatus.DELIVERED,
                                                         "written as LG1.hl7")
    assert write_once(tmp_path, "LG1.hl7", b"MSH|1") == (DeliveryStatus.DELIVERED,
                                                         "LG1.hl7 was already written")
    assert (tmp_path / "LG1.hl7").read_bytes() == b"MSH|1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LG1.hl7"]


def test_other_bytes_under_the_same_name_are_refused(tmp_path: Path) -> None:
    """A file with the same control ID but other content is kept; the entry is dead-lettered."""
    (tmp_path / "LG2.json").write_bytes(b"{}")
    status, text = write_once(tmp_path, "LG2.json", b'{"x": 1}')
    assert status is DeliveryStatus.REJECTED
    assert text == "LG2.json exists with other content; not overwritten"
    assert (tmp_path / "LG2.json").read_bytes() == b"{}"


def test_a_missing_directory_is_retried(tmp_path: Path) -> None:
    """The folder is gone (an unmounted share): RETRY with the OS's reason."""
    status, text = write_once(tmp_path / "gone", "LG3.hl7", b"x")
    assert status is DeliveryStatus.RETRY
    assert "No such file or directory" in text

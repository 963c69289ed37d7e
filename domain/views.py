"""Photo view codes (ADA White Paper 1100, as DICOM uses for orthodontic photographs)."""

from __future__ import annotations

from dataclasses import dataclass

from domain.errors import InvalidInput


@dataclass(frozen=True)
class PhotoView:
    code: str
    name: str
    intraoral: bool
    mirror: bool = False  # shot via a mirror: derivatives are flipped to read as direct views

    @property
    def mirror_axis(self) -> str | None:
        """Occlusal mirror shots flip top-to-bottom; anything else mirrored, left-to-right."""
        if not self.mirror:
            return None
        return "vertical" if "occlusal" in self.name else "horizontal"


VIEWS: dict[str, PhotoView] = {
    v.code: v
    for v in (
        PhotoView("EV15", "frontal at rest (lips relaxed)", intraoral=False),
        PhotoView("EV19", "frontal smile", intraoral=False),
        PhotoView("EV01", "right profile, lips relaxed", intraoral=False),
        PhotoView("EV08", "three-quarter (45° right)", intraoral=False),
        PhotoView("EV38", "close-up smile", intraoral=False),
        PhotoView("IV07", "frontal in occlusion (retracted)", intraoral=True),
        PhotoView("IV01", "right buccal", intraoral=True),
        PhotoView("IV18", "left buccal", intraoral=True),
        PhotoView("IV24", "upper occlusal (mirror)", intraoral=True, mirror=True),
        PhotoView("IV25", "upper occlusal (corrected)", intraoral=True),
        PhotoView("IV26", "lower occlusal (mirror)", intraoral=True, mirror=True),
        PhotoView("IV27", "lower occlusal (corrected)", intraoral=True),
        PhotoView("IV11", "overjet", intraoral=True),
        PhotoView("IV14", "overjet (lateral)", intraoral=True),
    )
}


def mirror_axis(code: str | None) -> str | None:
    view = VIEWS.get(code or "")
    return view.mirror_axis if view else None


def parse_view(code: str | None) -> str | None:
    if code is None or not code.strip():
        return None
    normalised = code.strip().upper()
    if normalised not in VIEWS:
        raise InvalidInput("unknown_view", f"{code[:16]!r} is not a known ADA-1100 view code")
    return normalised

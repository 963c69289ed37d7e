"""The DICOM status a stored object is answered with, the same over C-STORE and STOW-RS.

PS3.4 B.2.3 (C-STORE) and PS3.18 10.5.3 (STOW-RS FailureReason / WarningReason) share
these values, so one table serves both protocols:

- A resend of an instance already stored (same SOP Instance UID, same pixel data, same
  patient; any transfer syntax) is Success (0x0000): the first copy is kept.
- An object that is stored but held for reconciliation is Success too: custody is taken,
  nothing was coerced (0xB000 would claim that), and the sender must not resend it. STOW
  notes the hold in a private element of the instance's entry.
- A real conflict under an SOP Instance UID already used (other pixel data, another
  patient, a destroyed instance) is Error 0xC1xx: "Cannot understand" is PS3.4's family for
  an SCP that refuses to process an object, with the low bits ours. dcmtk's storescu names
  it ("Error: Cannot understand"), unlike 0x0111, which PS3.4 does not define for C-STORE.
"""

from __future__ import annotations

SUCCESS = 0x0000
REFUSED_OUT_OF_RESOURCES = 0xA700
REFUSED_NOT_AUTHORISED = 0x0124
DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122
INSTANCE_CONFLICT = 0xC111  # same SOP Instance UID, other pixel data
INSTANCE_ELSEWHERE = 0xC112  # same SOP Instance UID, another patient
INSTANCE_DESTROYED = 0xC113  # the SOP Instance UID names a destroyed instance

# Our stable error codes as statuses; anything else of ours is CANNOT_UNDERSTAND.
FAILURE_BY_CODE = {
    "dicom_no_pixel_data": DOES_NOT_MATCH_SOP_CLASS,
    "dicom_missing_uid": DOES_NOT_MATCH_SOP_CLASS,
    "dicom_unsupported_transfer_syntax": TRANSFER_SYNTAX_NOT_SUPPORTED,
    "dicom_instance_conflict": INSTANCE_CONFLICT,
    "dicom_instance_elsewhere": INSTANCE_ELSEWHERE,
    "dicom_instance_destroyed": INSTANCE_DESTROYED,
    "permission_denied": REFUSED_NOT_AUTHORISED,
    "capture_limited": REFUSED_NOT_AUTHORISED,
    "consent_required": REFUSED_NOT_AUTHORISED,
}


def failure_status(code: str) -> int:
    return FAILURE_BY_CODE.get(code, CANNOT_UNDERSTAND)

"""Personal data at rest: the operations over every record and dead letter.

- :mod:`~worker.privacy.erasure`: ``axb forget --phone`` (a data subject's deletion request);
- :mod:`~worker.privacy.rekey`: ``axb rekey`` (re-seal under the first key of ``AXB_DATA_KEY``);
- :mod:`~worker.privacy.scan`: the page-at-a-time walk over the records both use.

Sealing itself (AES-GCM of the values) is :mod:`worker.sealing`.
"""

from worker.privacy.erasure import FORGOTTEN, ForgetReport, Forgot, forget, normalised, subject_hash
from worker.privacy.rekey import SEALED_RECORD_FIELDS, RekeyReport, rekey

__all__ = [
    "FORGOTTEN",
    "SEALED_RECORD_FIELDS",
    "ForgetReport",
    "Forgot",
    "RekeyReport",
    "forget",
    "normalised",
    "rekey",
    "subject_hash",
]

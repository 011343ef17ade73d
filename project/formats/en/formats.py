"""One way to write a moment everywhere (admin lists, fields, pages): `2026-11-29 14:05:39 UTC`.

Django's own English formats mix `Nov. 29, 2026, 2:05 p.m.` with ISO dates; operators compare
times across pages and logs, so they read the same here as in the logs, with seconds and zone.
"""

DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"

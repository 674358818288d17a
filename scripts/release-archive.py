#!/usr/bin/env python3
"""Reproducible zip archives for dist/ (standard library only).

  release-archive.py zip OUT.zip NAME=PATH [NAME=PATH ...]

Entries are sorted by name, dated SOURCE_DATE_EPOCH (required; zip cannot
go before 1980), owned by no one, mode 0755 for executables and 0644
otherwise (Lambda runs `bootstrap` only if the zip marks it executable),
deflated at level 9, with no extra fields: the same inputs give the same
bytes on any machine.
"""

import os
import stat
import sys
import time
import zipfile


def main(argv):
    if len(argv) < 3 or argv[0] != "zip":
        sys.exit(__doc__)
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if not epoch or not epoch.isdigit():
        sys.exit("release-archive.py: SOURCE_DATE_EPOCH must be set (seconds since the epoch)")
    stamp = time.gmtime(max(int(epoch), 315532800))[:6]  # 1980-01-01, zip's floor
    entries = []
    for spec in argv[2:]:
        name, sep, path = spec.partition("=")
        if not sep or not name or name.startswith("/") or ".." in name.split("/"):
            sys.exit(f"release-archive.py: bad entry {spec!r} (want NAME=PATH)")
        entries.append((name, path))
    entries.sort()
    tmp = argv[1] + ".tmp"
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for name, path in entries:
            mode = 0o755 if os.stat(path).st_mode & stat.S_IXUSR else 0o644
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.create_system = 3  # Unix: external_attr carries the mode
            info.external_attr = (stat.S_IFREG | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(path, "rb") as f:
                z.writestr(info, f.read(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    os.replace(tmp, argv[1])


if __name__ == "__main__":
    main(sys.argv[1:])

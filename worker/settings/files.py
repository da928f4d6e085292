"""Reading the small files settings may point at, without hanging and within a size cap."""

from __future__ import annotations

import os
import stat

from worker.settings.errors import SettingsError

#: a password or credentials file larger than this is refused
SECRET_FILE_MAX_BYTES = 4096
#: a dotenv file larger than this is refused
ENV_FILE_MAX_BYTES = 1024 * 1024


def read_capped(name: str, path: str, cap: int) -> str:
    """The UTF-8 text of the regular file ``path`` (named by variable ``name``).

    Opened without blocking and checked to be a regular file before reading, so a FIFO or
    a device such as ``/dev/zero`` is refused at once; at most ``cap + 1`` bytes are read.
    Every failure is a one-line :class:`SettingsError` naming the variable and the path,
    never the content.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise SettingsError(f"{name} cannot be read ({path}): {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SettingsError(f"{name} must name a regular file ({path})")
        chunks: list[bytes] = []
        size = 0
        while size <= cap:
            chunk = os.read(fd, cap + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise SettingsError(f"{name} cannot be read ({path}): {exc.strerror}") from None
    finally:
        os.close(fd)
    if size > cap:
        raise SettingsError(f"{name} is larger than {cap} bytes ({path})")
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SettingsError(
            f"{name} is not valid UTF-8 ({path}, byte {exc.start})"
        ) from None

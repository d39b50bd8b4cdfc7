"""The workspace's datastore, as the CLI uses it to submit a job.

A local folder is uploaded under ``LocalUpload/<digest>/<name>/``, where the
digest is taken over its files' paths, modes and contents exactly as the CLI
takes it, so that a folder the CLI uploaded is reused by the SDK and the
other way round. ``.amlignore`` (else ``.gitignore``) in the folder and its
subfolders is honoured with the rules the CLI applies (go-git's gitignore
matching). Blobs are sent by their sha256 (only those the workspace lacks),
then recorded in one commit, so a folder appears whole or not at all.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import sys
import time
import urllib.parse
from typing import IO, Callable, Dict, List, Optional, Sequence, Tuple

from .._client import Connection, quote
from ..exceptions import HttpResponseError, ResourceNotFoundError, ServiceRequestError, UserErrorException

DATASTORE = "workspaceblobstore"
UPLOAD_ROOT = "LocalUpload/"
IGNORE_FILES = (".amlignore", ".gitignore")


def uri(datastore: str, path: str) -> str:
    """The short datastore URI of a path."""
    return f"azureml://datastores/{datastore}/paths/{path}"


class LocalFile:
    """A file to upload: its path in the folder (slash-separated), where to read it, size, sha256, mode."""

    __slots__ = ("rel", "abs", "size", "sha256", "mode")

    def __init__(self, rel: str, abs_path: str, size: int, mode: int, sha256: str = "") -> None:
        self.rel = rel
        self.abs = abs_path
        self.size = size
        self.mode = mode
        self.sha256 = sha256


def check_path(p: str) -> Optional[str]:
    """Why p is not a clean datastore path (None when it is)."""
    if p == "":
        return "empty path"
    if p.startswith("/"):
        return f"path {p!r}: must be relative (no leading /)"
    if "\x00" in p or "\\" in p:
        return f"path {p!r}: NUL and backslash are not allowed"
    for s in p.split("/"):
        if s == "":
            return f"path {p!r}: empty segment (// or a trailing /)"
        if s in (".", ".."):
            return f"path {p!r}: {s!r} segments are not allowed"
    return None


def human_bytes(n: int) -> str:
    """n bytes for people, as the CLI's messages write it (1.5 MiB)."""
    if n < 1024:
        return f"{n} B"
    div, exp = 1024, 0
    v = n // 1024
    while v >= 1024:
        div *= 1024
        exp += 1
        v //= 1024
    return f"{n / div:.1f} {'KMGTPE'[exp]}iB"


# --- gitignore rules, as go-git's plumbing/format/gitignore applies them ------

def _glob_regex(pattern: str) -> Optional["re.Pattern[str]"]:
    """A regex for one path segment matched as Go's filepath.Match matches it; None for a bad pattern."""
    out = []
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "\\":
            if i + 1 >= n:
                return None
            out.append(re.escape(pattern[i + 1]))
            i += 2
        elif c == "[":
            i += 1
            negate = i < n and pattern[i] == "^"
            if negate:
                i += 1
            ranges = []
            first = True
            while True:
                if i >= n:
                    return None
                if pattern[i] == "]" and not first:
                    i += 1
                    break
                lo, i = _class_char(pattern, i)
                if lo is None:
                    return None
                hi = lo
                if i < n and pattern[i] == "-":
                    hi, i = _class_char(pattern, i + 1)
                    if hi is None:
                        return None
                ranges.append((lo, hi))
                first = False
            body = "".join(f"{re.escape(lo)}-{re.escape(hi)}" if lo != hi else re.escape(lo) for lo, hi in ranges)
            out.append(f"[{'^' if negate else ''}{body}]")
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out), re.DOTALL)


def _class_char(pattern: str, i: int) -> Tuple[Optional[str], int]:
    if i >= len(pattern) or pattern[i] in "-]":
        return None, i
    if pattern[i] == "\\":
        if i + 1 >= len(pattern):
            return None, i
        return pattern[i + 1], i + 2
    return pattern[i], i + 1


def _seg_match(pattern: str, name: str) -> Optional[bool]:
    rx = _glob_regex(pattern)
    if rx is None:
        return None
    return rx.fullmatch(name) is not None


class IgnorePattern:
    """One line of an ignore file, applying below its file's folder (domain)."""

    def __init__(self, line: str, domain: Sequence[str]) -> None:
        self.domain = list(domain)
        self.inclusion = line.startswith("!")
        if self.inclusion:
            line = line[1:]
        if not line.endswith("\\ "):
            line = line.rstrip(" ")
        self.dir_only = line.endswith("/")
        if self.dir_only:
            line = line[:-1]
        self.is_glob = "/" in line
        self.parts = line.split("/")

    def match(self, path: Sequence[str], is_dir: bool) -> int:
        """0: no match; 1: excluded; 2: included again (!)."""
        if len(path) <= len(self.domain) or list(path[:len(self.domain)]) != self.domain:
            return 0
        rest = list(path[len(self.domain):])
        ok = self._glob(rest, is_dir) if self.is_glob else self._name(rest, is_dir)
        if not ok:
            return 0
        return 2 if self.inclusion else 1

    def _name(self, path: List[str], is_dir: bool) -> bool:
        # A slash-less pattern matches any segment of the path.
        for i, name in enumerate(path):
            m = _seg_match(self.parts[0], name)
            if m is None:
                return False
            if not m:
                continue
            return not (self.dir_only and not is_dir and i == len(path) - 1)
        return False

    def _glob(self, path: List[str], is_dir: bool) -> bool:
        matched = False
        traverse = False
        for i, part in enumerate(self.parts):
            if part == "":
                traverse = False
                continue
            if part == "**":
                if i == len(self.parts) - 1:
                    break
                traverse = True
                continue
            if "**" in part:
                return False
            if not path:
                return False
            if traverse:
                traverse = False
                while path:
                    seg = path.pop(0)
                    m = _seg_match(part, seg)
                    if m is None:
                        return False
                    if m:
                        matched = True
                        break
                    if not path:
                        matched = False
            else:
                m = _seg_match(part, path[0])
                if not m:
                    return False
                matched = True
                path = path[1:]
        if matched and self.dir_only and not is_dir and not path:
            matched = False
        return matched


def ignored(patterns: Sequence[IgnorePattern], path: Sequence[str], is_dir: bool) -> bool:
    """Whether the last pattern that matches path excludes it."""
    for p in reversed(patterns):
        r = p.match(path, is_dir)
        if r:
            return r == 1
    return False


def read_ignore(folder: str, rel: Sequence[str]) -> List[IgnorePattern]:
    """The patterns of folder's .amlignore (else .gitignore), applying below rel."""
    for name in IGNORE_FILES:
        p = os.path.join(folder, name)
        try:
            with open(p, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            continue
        patterns = []
        for raw in data.split(b"\n"):
            line = os.fsdecode(raw)
            if line.endswith("\r"):
                line = line[:-1]
            if line.startswith("#") or line.strip() == "":
                continue
            patterns.append(IgnorePattern(line, rel))
        return patterns
    return []


# --- scanning a folder -----------------------------------------------------------

def _mode(st_mode: int) -> int:
    # As git keeps it: executable or not, whatever the umask.
    return 0o755 if st_mode & 0o111 else 0o644


def _kind(st_mode: int) -> str:
    if stat.S_ISFIFO(st_mode):
        return "named pipe"
    if stat.S_ISSOCK(st_mode):
        return "socket"
    if stat.S_ISCHR(st_mode) or stat.S_ISBLK(st_mode):
        return "device"
    return "special file"


def scan(folder: str, ignore: bool = False, max_bytes: int = 0) -> List[LocalFile]:
    """The files of folder to upload, sorted by path, with sizes and digests (see the module doc)."""
    if not os.path.isdir(folder):
        if not os.path.exists(folder):
            raise UserErrorException(f"{folder}: no such file or directory")
        raise UserErrorException(f"{folder} is not a folder")
    files: List[LocalFile] = []
    _walk(folder, [], [], ignore, files)
    total = sum(f.size for f in files)
    if max_bytes and total > max_bytes:
        raise UserErrorException(_too_big(folder, files, total, max_bytes))
    files.sort(key=lambda f: os.fsencode(f.rel))
    for f in files:
        f.sha256 = hash_file(f.abs)
    return files


def _walk(folder: str, rel: List[str], patterns: List[IgnorePattern], ignore: bool, out: List[LocalFile]) -> None:
    try:
        names = sorted(os.listdir(folder), key=os.fsencode)
    except OSError as e:
        raise UserErrorException(f"{folder}: {e.strerror or e}") from None
    if ignore:
        # A copy: sibling folders must not see each other's patterns.
        patterns = patterns + read_ignore(folder, rel)
    for name in names:
        if name == ".git":
            continue
        segs = rel + [name]
        path = os.path.join(folder, name)
        rel_path = "/".join(segs)
        try:
            st = os.lstat(path)
        except OSError as e:
            raise UserErrorException(f"{path}: {e.strerror or e}") from None
        mode = st.st_mode
        if stat.S_ISLNK(mode):
            try:
                target = os.stat(path)
            except OSError as e:
                if ignore and ignored(patterns, segs, False):
                    continue
                raise UserErrorException(f"{path}: a symbolic link whose target cannot be read: {e.strerror or e}") from None
            if stat.S_ISDIR(target.st_mode):
                if ignore and ignored(patterns, segs, True):
                    continue
                raise UserErrorException(f"{path}: a symbolic link to a folder is not uploaded: replace it by the "
                                         "folder, or list it in .amlignore")
            st, mode = target, target.st_mode
        if ignore and ignored(patterns, segs, stat.S_ISDIR(mode)):
            continue
        if stat.S_ISDIR(mode):
            _walk(path, segs, patterns, ignore, out)
        elif stat.S_ISREG(mode):
            bad = check_path(rel_path)
            if bad:
                raise UserErrorException(f"{path}: {bad}")
            out.append(LocalFile(rel_path, path, st.st_size, _mode(mode)))
        else:
            raise UserErrorException(f"{path}: a {_kind(mode)} cannot be uploaded (only files and folders): "
                                     "list it in .amlignore")


def _too_big(folder: str, files: List[LocalFile], total: int, limit: int) -> str:
    big = sorted(files, key=lambda f: -f.size)[:5]
    lines = [f"{folder} holds {human_bytes(total)} in {len(files)} files, more than the limit of {human_bytes(limit)}; "
             "the largest:"]
    lines += [f"  {f.rel} ({human_bytes(f.size)})" for f in big]
    lines.append("list what the job does not need in a .amlignore file in the folder (the syntax of .gitignore)")
    return "\n".join(lines)


def hash_file(path: str) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while True:
                b = f.read(1 << 20)
                if not b:
                    break
                h.update(b)
    except OSError as e:
        raise UserErrorException(f"{path}: {e.strerror or e}") from None
    return h.hexdigest()


def tree_digest(files: Sequence[LocalFile]) -> str:
    """A folder's name by its content: sha256 over each file's digest, mode and length-prefixed path."""
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: os.fsencode(f.rel)):
        rel = os.fsencode(f.rel)
        h.update(f"{f.sha256} {f.mode:o} {len(rel)}:".encode() + rel + b"\n")
    return h.hexdigest()


# --- uploading ---------------------------------------------------------------------

_RETRIES = 3


def _transient(e: Exception) -> bool:
    if isinstance(e, ServiceRequestError):
        return True
    return isinstance(e, HttpResponseError) and e.status_code in (502, 503, 504)


def _retry(f: Callable[[], object]) -> object:
    delay = 0.5
    for attempt in range(_RETRIES + 1):
        try:
            return f()
        except (ServiceRequestError, HttpResponseError) as e:
            if attempt == _RETRIES or not _transient(e):
                raise
        # A network failure or a briefly unable workspace: the same
        # request (HEAD, a blob by its digest, a commit) is harmless again.
        time.sleep(delay)
        delay *= 2
    raise AssertionError("unreachable")


class Datastore:
    """The datastore calls of one workspace (base: /resourceGroups/RG/workspaces/WS)."""

    def __init__(self, conn: Connection, base: str, progress: Optional[IO[str]] = None) -> None:
        self.conn = conn
        self.base = base
        self.progress = progress

    def _say(self, line: str) -> None:
        if self.progress is not None:
            self.progress.write(line + "\n")
            self.progress.flush()

    def list(self, datastore: str, prefix: str) -> list:
        q = urllib.parse.urlencode({"prefix": prefix})
        path = f"{self.base}/datastores/{quote(datastore)}/files?{q}"
        return _retry(lambda: self.conn.call("GET", path)) or []  # type: ignore[return-value]

    def exists(self, datastore: str, prefix: str) -> bool:
        """Whether prefix names a file, or a folder with at least one file."""
        return len(self.list(datastore, prefix)) > 0

    def _has_blob(self, digest: str) -> bool:
        path = f"{self.base}/blobs/sha256:{digest}"

        def head() -> bool:
            try:
                self.conn.request("HEAD", path)
            except ResourceNotFoundError:
                return False
            return True

        return bool(_retry(head))

    def _put_blob(self, f: LocalFile) -> None:
        path = f"{self.base}/blobs/sha256:{f.sha256}"

        def put() -> None:
            with open(f.abs, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size != f.size:
                    raise UserErrorException(f"{f.abs}: changed while uploading ({size} bytes, {f.size} when listed)")
                try:
                    self.conn.request("PUT", path, fh, content_type="application/octet-stream", length=f.size,
                                      timeout=300)
                except HttpResponseError as e:
                    if e.code == "DigestMismatch":
                        raise UserErrorException(f"{f.abs}: changed while uploading: {e.message}") from None
                    raise

        _retry(put)

    def upload_files(self, files: Sequence[LocalFile], datastore: str, prefix: str) -> None:
        """Sends the blobs the workspace lacks, then records every file under prefix in one commit."""
        if prefix:
            bad = check_path(prefix[:-1]) if prefix.endswith("/") else f"upload prefix {prefix!r}: want a folder path ending in /"
            if bad:
                raise UserErrorException(bad)
        commit = []
        unique: Dict[str, LocalFile] = {}
        for f in files:
            p = prefix + f.rel
            bad = check_path(p)
            if bad:
                raise UserErrorException(f"{f.abs}: {bad}")
            commit.append({"path": p, "size": f.size, "sha256": f.sha256, "mode": f.mode})
            unique.setdefault(f.sha256, f)
        start = time.monotonic()
        total = sum(f.size for f in unique.values())
        sent = 0
        for digest, f in unique.items():
            if not self._has_blob(digest):
                self._put_blob(f)
                sent += f.size
        if commit:
            path = f"{self.base}/datastores/{quote(datastore)}/commit"
            _retry(lambda: self.conn.call("POST", path, {"files": commit}))
        self._say(f"uploaded to {uri(datastore, prefix)}: {len(files)} files, {human_bytes(total)} "
                  f"(sent {human_bytes(sent)}, {human_bytes(total - sent)} already there) "
                  f"({time.monotonic() - start:.1f}s)")

    def upload_dir(self, folder: str, datastore: str, prefix: str, ignore: bool = False, max_bytes: int = 0) -> None:
        self.upload_files(scan(folder, ignore, max_bytes), datastore, prefix)

    def upload_file(self, file: str, datastore: str, path: str) -> None:
        st = os.stat(file)
        f = LocalFile(path, file, st.st_size, _mode(st.st_mode), hash_file(file))
        self.upload_files([f], datastore, "")


def default_progress() -> IO[str]:
    return sys.stderr

"""Folders to upload: ignore rules, what is refused, digests. That the SDK
names and uploads a folder exactly as the CLI does is checked against the
CLI itself in e2e/sdk/parity."""

import os
import shutil
import tempfile
import unittest

from outpost.exceptions import UserErrorException
from outpost.ml import _artifacts as a


def ignored(lines, path, is_dir=False, domain=()):
    return a.ignored([a.IgnorePattern(line, list(domain)) for line in lines], path.split("/"), is_dir)


class IgnoreTest(unittest.TestCase):
    def test_names_and_globs(self):
        self.assertTrue(ignored(["*.log"], "a/b/x.log"))
        self.assertFalse(ignored(["*.log", "!keep.log"], "keep.log"))
        self.assertTrue(ignored(["build/"], "build", is_dir=True))
        self.assertFalse(ignored(["build/"], "build"))  # a file named build
        self.assertTrue(ignored(["/top.txt"], "top.txt"))
        self.assertFalse(ignored(["/top.txt"], "sub/top.txt"))
        self.assertTrue(ignored(["**/deep.tmp"], "a/b/deep.tmp"))
        self.assertTrue(ignored(["docs/**"], "docs/a/b.md"))
        self.assertTrue(ignored(["a/*.bin"], "a/x.bin"))
        self.assertFalse(ignored(["a/*.bin"], "b/a/x.bin"))
        self.assertTrue(ignored(["file[0-9].txt"], "file7.txt"))
        self.assertFalse(ignored(["file[^0-9].txt"], "file7.txt"))
        self.assertTrue(ignored(["with\\ space "], "with space"))

    def test_domain(self):
        self.assertTrue(ignored(["*.bak"], "sub/x.bak", domain=["sub"]))
        self.assertFalse(ignored(["*.bak"], "x.bak", domain=["sub"]))

    def test_bad_pattern_matches_nothing(self):
        self.assertFalse(ignored(["[a"], "[a"))


class ScanTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="outpost-sdk-scan-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def write(self, rel, content="x"):
        p = os.path.join(self.dir, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(content)
        return p

    def test_scan(self):
        self.write(".amlignore", "*.log\n!keep.log\ncache/\n")
        self.write("a.py")
        self.write("x.log")
        self.write("keep.log")
        self.write("cache/c.txt")
        self.write(".git/HEAD")
        self.write("sub/.gitignore", "*.bak\n")
        self.write("sub/old.bak")
        self.write("sub/new.py")
        os.symlink("a.py", os.path.join(self.dir, "link.py"))
        files = a.scan(self.dir, ignore=True)
        self.assertEqual([f.rel for f in files], [".amlignore", "a.py", "keep.log", "link.py", "sub/.gitignore", "sub/new.py"])
        self.assertEqual(len(a.scan(self.dir)), 9)  # without the ignore files: all but .git

    def test_refused(self):
        os.symlink(self.dir, os.path.join(self.dir, "loop"))
        with self.assertRaises(UserErrorException) as cm:
            a.scan(self.dir)
        self.assertIn("a symbolic link to a folder is not uploaded", str(cm.exception))
        self.write(".amlignore", "loop\n")
        self.assertEqual([f.rel for f in a.scan(self.dir, ignore=True)], [".amlignore"])

    def test_too_big(self):
        self.write("big.bin", "x" * 2048)
        with self.assertRaises(UserErrorException) as cm:
            a.scan(self.dir, ignore=True, max_bytes=1024)
        self.assertIn("holds 2.0 KiB in 1 files, more than the limit of 1.0 KiB", str(cm.exception))
        self.assertIn("big.bin (2.0 KiB)", str(cm.exception))

    def test_digest_depends_on_names_modes_and_bytes(self):
        self.write("a.txt", "one")
        d1 = a.tree_digest(a.scan(self.dir))
        os.chmod(os.path.join(self.dir, "a.txt"), 0o755)
        d2 = a.tree_digest(a.scan(self.dir))
        self.write("a.txt", "two")
        d3 = a.tree_digest(a.scan(self.dir))
        self.assertEqual(len({d1, d2, d3}), 3)

    def test_check_path(self):
        self.assertIsNone(a.check_path("a/b.txt"))
        for p in ("", "/a", "a//b", "a/../b", "a\\b"):
            self.assertIsNotNone(a.check_path(p), p)

    def test_human_bytes(self):
        self.assertEqual([a.human_bytes(n) for n in (5, 1536, 3 << 20)], ["5 B", "1.5 KiB", "3.0 MiB"])


if __name__ == "__main__":
    unittest.main()

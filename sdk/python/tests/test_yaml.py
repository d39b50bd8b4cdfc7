"""The SDK's YAML reader: types, block scalars, flow collections, lines, errors.

Each case under tests/yaml/ok and tests/yaml/bad is also read by the CLI's
reader in e2e/sdk/parity, which checks both agree.
"""

import glob
import os
import tempfile
import unittest

from outpost import _json, _yaml
from outpost.exceptions import ValidationException, YAMLError

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..", "..")


def j(text: str) -> str:
    return _json.dumps(_yaml.load(text, "t.yml"))


class TypesTest(unittest.TestCase):
    def test_scalars(self):
        self.assertEqual(j("a: 1\nb: 1.0\nc: yes\nd: ~\ne: text\nf: '1'\n"),
                         '{"a":1,"b":1.0,"c":true,"d":null,"e":"text","f":"1"}')

    def test_numbers_keep_their_text(self):
        # The CLI sends a number as it was written when that is JSON.
        self.assertEqual(j("a: [1.50, 1e3, -0, 0.10]"), '{"a":[1.50,1e3,-0,0.10]}')
        # Otherwise as Go writes it.
        self.assertEqual(j("a: [0x1F, 1_000, .5, +3, 1_000_000.0, 007]"), '{"a":[31,1000,0.5,3,1e+06,7]}')
        v = _yaml.load("a: 1.50\nb: 0x1F\n")
        self.assertEqual(v["a"], 1.5)
        self.assertEqual(v["b"], 31)

    def test_bools_and_keys(self):
        v = _yaml.load("on: off\nyes: no\nflag: YES\n")
        self.assertEqual(v, {"on": False, "yes": False, "flag": True})

    def test_timestamps_stay_text(self):
        self.assertEqual(_yaml.load("when: 2024-01-01")["when"], "2024-01-01")

    def test_not_json_numbers_refused(self):
        with self.assertRaises(YAMLError) as cm:
            _yaml.load("a:\n  b: .inf\n", "job.yml")
        self.assertEqual(str(cm.exception), "job.yml: line 2: .inf is not a number JSON can hold; quote it for text")
        self.assertEqual((cm.exception.file, cm.exception.line), ("job.yml", 2))


class BlockScalarTest(unittest.TestCase):
    def test_chomping(self):
        v = _yaml.load("clip: |\n  a\n\n\nstrip: |-\n  a\n\nkeep: |+\n  a\n\n\nend: 1\n")
        self.assertEqual(v["clip"], "a\n")
        self.assertEqual(v["strip"], "a")
        self.assertEqual(v["keep"], "a\n\n\n")

    def test_folded(self):
        v = _yaml.load("f: >\n  one\n  two\n\n  three\n    indented\n  four\n")
        self.assertEqual(v["f"], "one two\nthree\n  indented\nfour\n")

    def test_indentation_indicator(self):
        self.assertEqual(_yaml.load("a: |2\n    x\n  y\n")["a"], "  x\ny\n")

    def test_end_of_file(self):
        self.assertEqual(_yaml.load("a: |\n  no newline")["a"], "no newline")
        self.assertEqual(_yaml.load("a: |+\n  x\n\n")["a"], "x\n\n")

    def test_command_as_in_jobs(self):
        v = _yaml.load("command: >-\n  python main.py\n  --data ${{inputs.iris}}\n")
        self.assertEqual(v["command"], "python main.py --data ${{inputs.iris}}")


class StructureTest(unittest.TestCase):
    def test_roots(self):
        cases = os.path.join(HERE, "yaml", "python_only")
        self.assertIsNone(_yaml.load_file(os.path.join(cases, "empty.yml")))
        self.assertIsNone(_yaml.load_file(os.path.join(cases, "comments_only.yml")))
        self.assertEqual(_yaml.load_file(os.path.join(cases, "root_list.yml")), ["a", {"b": "c", "d": "e"}, ["f"]])
        self.assertEqual(_yaml.load_file(os.path.join(cases, "root_scalar.yml")), "just text")

    def test_flow(self):
        self.assertEqual(_yaml.load("a: [x, {b: 1, c: [2, 3]}, 'y, z']\nb: {k: v, e:, f}\n"),
                         {"a": ["x", {"b": 1, "c": [2, 3]}, "y, z"], "b": {"k": "v", "e:": None, "f": None}})
        self.assertEqual(_yaml.load("a: [\n  1,\n  2, # two\n]\n"), {"a": [1, 2]})

    def test_compact_list_and_nesting(self):
        v = _yaml.load("a:\n- x: 1\n  y: 2\n- - z\nb: 3\n")
        self.assertEqual(v, {"a": [{"x": 1, "y": 2}, ["z"]], "b": 3})

    def test_quoted(self):
        v = _yaml.load("a: 'it''s'\nb: \"t\\tx\\u263A\"\nc: \"one\n  two\"\n")
        self.assertEqual(v, {"a": "it's", "b": "t\tx\u263a", "c": "one two"})

    def test_crlf_and_bom(self):
        self.assertEqual(_yaml.load("\ufeffa: 1\r\nb: |\r\n  x\r\n"), {"a": 1, "b": "x\n"})

    def test_document_markers(self):
        self.assertEqual(_yaml.load("---\na: 1\n...\n"), {"a": 1})

    def test_lines(self):
        doc = _yaml.load_document_text("a: 1\ninputs:\n  iris:\n    path: ./data\nlist:\n  - x\n  - y: 2\n", "job.yml")
        self.assertEqual(doc.line("inputs.iris.path"), 4)
        self.assertEqual(doc.line("inputs"), 2)
        self.assertEqual(doc.line("list[1].y"), 7)
        self.assertEqual(doc.line("missing"), 0)


class ErrorTest(unittest.TestCase):
    def err(self, text: str) -> YAMLError:
        with self.assertRaises(YAMLError) as cm:
            _yaml.load(text, "f.yml")
        return cm.exception

    def test_refused(self):
        for text, line, words in [
            ("a: &x 1\nb: *x\n", 1, "anchors"),
            ("a: 1\nb: *x\n", 2, "aliases"),
            ("a: !!int 3\n", 1, "tags"),
            ("? a\n: b\n", 1, "explicit keys"),
            ("%YAML 1.2\n---\na: 1\n", 1, "directives"),
            ("a: 1\n---\nb: 2\n", 2, "second YAML document"),
        ]:
            e = self.err(text)
            self.assertEqual(e.line, line, text)
            self.assertIn(words, e.problem, text)
            self.assertTrue(str(e).startswith(f"f.yml: line {line}: "), str(e))

    def test_mistakes(self):
        for text, line, words in [
            ("a: 1\nb: 2\na: 3\n", 3, 'duplicate key "a" (first at line 1)'),
            ("a:\n  b: 1\n c: 2\n", 3, "bad indentation"),
            ("a: b: c\n", 1, "mapping cannot start"),
            ("a: \"open\nb: 1\n", 1, "never closed"),
            ("a: [1, 2\n", 1, "never closed"),
            ("a:\n\tb: 1\n", 2, "tab"),
            ("10: ten\n", 1, "not a string"),
            ("a: \"\\q\"\n", 1, "unknown escape"),
        ]:
            e = self.err(text)
            self.assertEqual(e.line, line, text)
            self.assertIn(words, e.problem, text)

    def test_is_a_validation_exception(self):
        self.assertIsInstance(self.err("a: *x\n"), ValidationException)

    def test_not_utf8(self):
        with tempfile.NamedTemporaryFile("wb", suffix=".yml", delete=False) as f:
            f.write(b"a: 1\nb: \xff\n")
        try:
            with self.assertRaises(YAMLError) as cm:
                _yaml.load_file(f.name)
            self.assertEqual(cm.exception.line, 2)
        finally:
            os.unlink(f.name)


class CasesTest(unittest.TestCase):
    def test_examples_and_cases(self):
        files = glob.glob(os.path.join(ROOT, "examples", "**", "*.yml"), recursive=True)
        files += glob.glob(os.path.join(HERE, "yaml", "ok", "*.yml"))
        self.assertGreater(len(files), 10)
        for f in files:
            v = _yaml.load_file(f)
            self.assertIsInstance(v, dict, f)
            _json.dumps(v)

    def test_bad_and_refused_cases_fail(self):
        files = glob.glob(os.path.join(HERE, "yaml", "bad", "*.yml")) + glob.glob(os.path.join(HERE, "yaml", "refused", "*.yml"))
        self.assertGreater(len(files), 10)
        for f in files:
            with self.assertRaises(YAMLError, msg=f) as cm:
                _yaml.load_file(f)
            self.assertTrue(cm.exception.message.startswith(f + ": line "), cm.exception.message)

    def test_kubernetes_manifest_with_documents_refused(self):
        with self.assertRaises(YAMLError) as cm:
            _yaml.load_file(os.path.join(ROOT, "examples", "hello.yaml"))
        self.assertIn("second YAML document", cm.exception.problem)


if __name__ == "__main__":
    unittest.main()

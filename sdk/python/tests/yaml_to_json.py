"""Prints the JSON the SDK makes of each YAML file given, one line each.

A file the SDK refuses prints ``ERROR <message>`` instead. The Go test in
e2e/sdk/parity compares these lines with what the CLI makes of the files.
"""

import sys

from outpost import _json, _yaml
from outpost.exceptions import YAMLError


def main() -> int:
    for path in sys.argv[1:]:
        try:
            print(_json.dumps(_yaml.load_file(path)))
        except YAMLError as e:
            print("ERROR " + e.message.replace("\n", " "))
    return 0


if __name__ == "__main__":
    sys.exit(main())

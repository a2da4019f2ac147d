#!/usr/bin/env python3
"""Refuses a YAML file whose mapping holds a key twice.

YAML parsers, Compose's included, keep the last of two equal keys without a word, so a
second `archiver:` override in a compose file silently drops the first one's settings.
Part of scripts/test.sh ("deployment files").

    scripts/yaml_keys.py FILE...
"""

import sys

import yaml


class UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that fails on a repeated key instead of keeping the last value."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            # `<<: *anchor` merges another mapping in; its keys may be overridden here
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found key {key!r} again (first at line {seen[key] + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def main(paths):
    failed = False
    for path in paths:
        with open(path, encoding="utf-8") as f:
            try:
                list(yaml.load_all(f, Loader=UniqueKeyLoader))
            except yaml.YAMLError as e:
                print(f"{path}: {e}", file=sys.stderr)
                failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1:]))

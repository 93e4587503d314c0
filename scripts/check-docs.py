#!/usr/bin/env python3
"""Lists public declarations that have no `///` documentation comment.

Scans the Swift files of the public targets (by default Sources/Mosquitto and
Sources/MosquittoTesting, relative to the package root) and prints every public symbol whose
declaration is not directly preceded by a `///` comment (or a `/** ... */` block). Attribute lines
such as `@discardableResult` may sit between the comment and the declaration.

A public symbol is:
- a declaration with a `public` or `open` modifier (types, functions, initializers, properties,
  subscripts, type aliases, associated types), also inside extensions;
- a requirement of a public protocol (it is public without the keyword);
- an enum case of a public enum.

Members of a type that is not itself public or open are not public symbols and are skipped.
Extension declarations themselves are not symbols; members of a `public extension` are.

Usage: python3 scripts/check-docs.py [--verbose] [DIRECTORY ...]
(--verbose also lists the documented public symbols found.)
Exit status: 0 when everything is documented, 1 when something is missing, 2 on bad usage.
"""

import os
import re
import sys

DEFAULT_DIRECTORIES = ["Sources/Mosquitto", "Sources/MosquittoTesting"]

DECLARATION_KEYWORDS = (
    "class", "struct", "enum", "protocol", "actor", "extension", "func", "init", "deinit",
    "var", "let", "subscript", "typealias", "associatedtype", "case", "macro",
)
TYPE_KEYWORDS = ("class", "struct", "enum", "protocol", "actor", "extension")
MODIFIERS = {
    "public", "open", "internal", "fileprivate", "private", "package", "static", "final",
    "override", "mutating", "nonmutating", "convenience", "required", "indirect", "lazy", "weak",
    "unowned", "optional", "dynamic", "nonisolated", "isolated", "consuming", "borrowing",
    "distributed", "prefix", "postfix", "infix",
}
IDENTIFIER = re.compile(r"`?[A-Za-z_][A-Za-z0-9_]*`?")


def strip_code(line, state):
    """Returns `line` without string literals and comments, so that braces and keywords in them
    are not counted. `state` carries open block comments and multi-line strings across lines."""
    out = []
    i = 0
    n = len(line)
    while i < n:
        if state["block_comment"]:
            end = line.find("*/", i)
            if end < 0:
                return "".join(out)
            state["block_comment"] = False
            i = end + 2
            continue
        if state["multiline_string"] is not None:
            end = line.find(state["multiline_string"], i)
            if end < 0:
                return "".join(out)
            i = end + len(state["multiline_string"])
            state["multiline_string"] = None
            continue
        if line.startswith("//", i):
            break
        if line.startswith("/*", i):
            state["block_comment"] = True
            i += 2
            continue
        raw = re.match(r'(#*)("""|")', line[i:])
        if raw:
            hashes, quote = raw.group(1), raw.group(2)
            closing = quote + hashes
            i += raw.end()
            if quote == '"""':
                state["multiline_string"] = closing
                continue
            # A single-line literal: skip to its closing quote (escapes only count without #).
            while i < n and not line.startswith(closing, i):
                i += 2 if (line[i] == "\\" and not hashes) else 1
            i += len(closing)
            out.append('""')
            continue
        out.append(line[i])
        i += 1
    return "".join(out)


def parse_declaration(code):
    """Splits a line of code into (modifiers, keyword, name) if it starts a declaration."""
    text = code.strip()
    # Leading attributes on the same line: @discardableResult public func ...
    while text.startswith("@"):
        match = re.match(r"@[A-Za-z_][A-Za-z0-9_.]*(\([^)]*\))?\s*", text)
        if not match:
            break
        text = text[match.end():]
    modifiers = []
    while True:
        match = re.match(r"([a-z]+)(\(set\))?\s+", text)
        if not match or match.group(1) not in MODIFIERS:
            break
        # `private(set)` and the like restrict the setter only: they say nothing about the symbol.
        if match.group(2) is None:
            modifiers.append(match.group(1))
        text = text[match.end():]
    match = re.match(r"(%s)\b\s*(.*)" % "|".join(DECLARATION_KEYWORDS), text)
    if not match:
        return None
    keyword, rest = match.group(1), match.group(2)
    if keyword in ("init", "deinit", "subscript"):
        name = keyword + re.match(r"[?!]?\s*(\([^)]*\)?)?", rest).group(0).strip()
    elif keyword == "func":
        operator = re.match(r"([^\s(<]+)", rest)
        name = operator.group(1) if operator else "?"
    else:
        ident = IDENTIFIER.match(rest)
        name = ident.group(0) if ident else rest.split("(")[0].strip() or "?"
    return modifiers, keyword, name


class Scope:
    def __init__(self, kind, name, public, depth):
        self.kind = kind          # "file", "extension", or the type keyword
        self.name = name
        self.public = public      # whether members can be public symbols
        self.depth = depth        # brace depth inside this scope's body


def is_attribute_line(text):
    """Whether `text` holds only attributes, e.g. `@discardableResult` or `@available(*, deprecated)`."""
    rest = text
    while rest.startswith("@"):
        match = re.match(r"@[A-Za-z_][A-Za-z0-9_.]*(\([^)]*\))?\s*", rest)
        if not match:
            return False
        rest = rest[match.end():]
    return rest == "" and text != ""


def check_file(path, found):
    """Returns (path, line, keyword, qualified name) for each undocumented public symbol, and
    appends the documented ones to `found`."""
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    missing = []
    state = {"block_comment": False, "multiline_string": None}
    scopes = [Scope("file", "", True, 0)]
    depth = 0
    pending_scope = None     # a type or extension whose `{` has not been seen yet
    documented = False       # whether a doc comment ends right above (attributes may follow it)
    in_doc_block = False     # inside a /** ... */ doc comment
    for number, raw in enumerate(lines, start=1):
        stripped = raw.strip()
        if in_doc_block:
            in_doc_block = "*/" not in stripped
            continue
        inside_literal = state["block_comment"] or state["multiline_string"] is not None
        if not inside_literal and stripped.startswith("///"):
            documented = True
            continue
        if not inside_literal and stripped.startswith("/**") and not stripped.startswith("/**/"):
            in_doc_block = "*/" not in stripped[3:]
            documented = True
            continue
        code = strip_code(raw, state)
        text = code.strip()
        if is_attribute_line(text):
            continue
        scope = scopes[-1]
        declaration = parse_declaration(text) if text and depth == scope.depth else None
        if declaration:
            modifiers, keyword, name = declaration
            explicit = "public" in modifiers or "open" in modifiers
            restricted = any(m in modifiers for m in ("internal", "fileprivate", "private", "package"))
            if keyword == "extension":
                is_public = False
            elif keyword == "case":
                is_public = scope.kind == "enum" and scope.public
            elif scope.kind == "protocol":
                is_public = scope.public
            elif scope.kind == "extension":
                is_public = explicit or (scope.public and not restricted)
            else:
                is_public = explicit and scope.public
            if is_public:
                qualified = ".".join(s.name for s in scopes[1:] if s.name)
                label = (qualified + "." if qualified else "") + name
                (found if documented else missing).append((path, number, keyword, label))
            if keyword == "extension":
                target = IDENTIFIER.match(text[text.index("extension") + len("extension"):].strip())
                pending_scope = Scope("extension", target.group(0) if target else "?", explicit, 0)
            elif keyword in TYPE_KEYWORDS:
                pending_scope = Scope(keyword, name, is_public, 0)
        documented = False
        # A `{` opens the pending type's body, or an anonymous scope (a function body, a
        # computed property, a closure) whose contents are never member declarations.
        for char in code:
            if char == "{":
                depth += 1
                if pending_scope is not None:
                    pending_scope.depth = depth
                    scopes.append(pending_scope)
                    pending_scope = None
            elif char == "}":
                if len(scopes) > 1 and scopes[-1].depth == depth:
                    scopes.pop()
                depth -= 1
    return missing


def main(arguments):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    verbose = "--verbose" in arguments
    arguments = [a for a in arguments if a != "--verbose"]
    if any(a.startswith("-") for a in arguments):
        print("usage: python3 scripts/check-docs.py [--verbose] [DIRECTORY ...]", file=sys.stderr)
        return 2
    directories = arguments or [os.path.join(root, d) for d in DEFAULT_DIRECTORIES]
    files = []
    for directory in directories:
        if not os.path.isdir(directory):
            print("check-docs: no such directory: %s" % directory, file=sys.stderr)
            return 2
        for base, _, names in os.walk(directory):
            files.extend(os.path.join(base, n) for n in names if n.endswith(".swift"))
    missing = []
    found = []
    for path in sorted(files):
        missing.extend(check_file(path, found))
    def shown(path):
        relative = os.path.relpath(path, root)
        return path if relative.startswith("..") else relative

    if verbose:
        for path, number, keyword, label in found:
            print("%s:%d: documented public %s %s" % (shown(path), number, keyword, label))
    for path, number, keyword, label in missing:
        print("%s:%d: undocumented public %s %s" % (shown(path), number, keyword, label))
    if missing:
        print("check-docs: %d undocumented public declaration(s) in %d file(s)" % (len(missing), len(files)))
        return 1
    print("check-docs: every public declaration in %d file(s) is documented" % len(files))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Checks Varlink interface descriptions against the IDL grammar of varlink.org.

    varlink_idl_check.py FILE...                  check description files
    varlink_idl_check.py --socket PATH IFACE...   fetch them with GetInterfaceDescription

Checks the syntax, that every type used is declared, that no name is declared
twice, and that every declaration has a comment. Exits 1 with a message on the
first problem.
"""

import re
import sys

INTERFACE = re.compile(r"[A-Za-z]([-]*[A-Za-z0-9])*(\.[A-Za-z0-9]([-]*[A-Za-z0-9])*)+$")
MEMBER = re.compile(r"[A-Z][A-Za-z0-9]*$")
FIELD = re.compile(r"[A-Za-z](_?[A-Za-z0-9])*$")
TOKEN = re.compile(r"\s*(->|\[string\]|\[\]|[(),:?]|[A-Za-z0-9_.\-]+)")
BUILTIN = {"bool", "int", "float", "string", "object"}


class IdlError(Exception):
    pass


class Parser:
    def __init__(self, text):
        self.tokens = []
        self.documented = []  # per declaration keyword token: had a comment above
        pending_comment = False
        for line in text.splitlines():
            stripped = line.strip()
            if stripped.startswith("#"):
                pending_comment = True
                continue
            if not stripped:
                continue
            code = line.split("#", 1)[0]
            pos = 0
            while pos < len(code.rstrip()):
                match = TOKEN.match(code, pos)
                if not match:
                    raise IdlError(f"unexpected text: {code[pos:].strip()!r}")
                token = match.group(1)
                if token in ("interface", "type", "method", "error") and pos == 0:
                    self.documented.append((token, pending_comment))
                self.tokens.append(token)
                pos = match.end()
            pending_comment = False
        self.pos = 0

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected=None):
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise IdlError(f"expected {expected or 'more'}, found {token!r}")
        self.pos += 1
        return token

    def name(self, pattern, what):
        token = self.take()
        if not pattern.match(token):
            raise IdlError(f"invalid {what}: {token!r}")
        return token

    def type(self, used):
        if self.peek() == "?":
            self.take()
            if self.peek() == "?":
                raise IdlError("?? is not a type")
        token = self.peek()
        if token in ("[]", "[string]"):
            self.take()
            return self.type(used)
        if token == "(":
            return self.struct_or_enum(used)
        token = self.take()
        if token not in BUILTIN:
            if not MEMBER.match(token):
                raise IdlError(f"invalid type: {token!r}")
            used.add(token)

    def struct_or_enum(self, used):
        self.take("(")
        fields = []
        kinds = set()
        while self.peek() != ")":
            fields.append(self.name(FIELD, "field name"))
            if self.peek() == ":":
                self.take()
                self.type(used)
                kinds.add("struct")
            else:
                kinds.add("enum")
            if self.peek() == ",":
                self.take()
                if self.peek() == ")":
                    raise IdlError("a comma before )")
            elif self.peek() != ")":
                raise IdlError(f"expected , or ), found {self.peek()!r}")
        self.take(")")
        if len(kinds) > 1:
            raise IdlError(f"fields and enum values mixed: {fields}")
        if len(set(fields)) != len(fields):
            raise IdlError(f"a field twice: {fields}")

    def parse(self):
        self.take("interface")
        interface = self.name(INTERFACE, "interface name")
        declared, used = set(), set()
        while self.peek() is not None:
            keyword = self.take()
            if keyword not in ("type", "method", "error"):
                raise IdlError(f"expected type, method or error, found {keyword!r}")
            member = self.name(MEMBER, f"{keyword} name")
            if (keyword, member) in declared or (keyword == "type" and member in
                                                  {m for k, m in declared if k == "type"}):
                raise IdlError(f"{keyword} {member} declared twice")
            declared.add((keyword, member))
            self.struct_or_enum(used)
            if keyword == "method":
                self.take("->")
                self.struct_or_enum(used)
        types = {m for k, m in declared if k == "type"}
        missing = used - types
        if missing:
            raise IdlError(f"undeclared types: {sorted(missing)}")
        undocumented = [k for k, documented in self.documented[1:] if not documented]
        if undocumented:
            raise IdlError(f"{len(undocumented)} declarations without a comment")
        return interface, len(declared)


def check(text):
    return Parser(text).parse()


def main(argv):
    texts = []
    if argv and argv[0] == "--socket":
        sys.dont_write_bytecode = True  # no __pycache__ in the source tree
        sys.path.insert(0, __import__("os").path.dirname(__file__))
        from varlink_client import Connection
        with Connection(argv[1]) as varlink:
            for name in argv[2:]:
                reply, _ = varlink.call("org.varlink.service.GetInterfaceDescription",
                                        {"interface": name})
                texts.append((name, reply["description"]))
    else:
        texts = [(path, open(path).read()) for path in argv]
    for source, text in texts:
        try:
            interface, members = check(text)
        except IdlError as e:
            print(f"{source}: {e}", file=sys.stderr)
            return 1
        print(f"{source}: interface {interface}, {members} members")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

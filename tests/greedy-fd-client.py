#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# A D-Bus client that asks nsfdd for namespace fds of its own process and never
# reads a reply (SECURITY.md, "Known weakness"). Written on the raw socket so
# that nothing reads behind its back. Used by scripts/measure-fd-stall.
#
#   greedy-fd-client.py SOCKET_PATH GetNamespace|GetNamespaces COUNT
#
# Prints "sent" once all COUNT calls are written, then sleeps until killed.
import os
import socket
import struct
import sys
import time


def pad(data, alignment):
    return data + b"\0" * (-len(data) % alignment)


def string(value, signature=False):
    raw = value.encode()
    if signature:
        return struct.pack("<B", len(raw)) + raw + b"\0"
    return struct.pack("<I", len(raw)) + raw + b"\0"


def message(serial, path, interface, member, destination, signature="", body=b""):
    fields = b""
    for code, kind, value in [(1, "o", path), (2, "s", interface), (3, "s", member),
                              (6, "s", destination), (8, "g", signature)]:
        if code == 8 and not signature:
            continue
        fields = pad(fields, 8)
        fields += struct.pack("<B", code) + string(kind, signature=True)
        fields += string(value, signature=kind == "g")
    header = struct.pack("<cBBBII", b"l", 1, 0, 1, len(body), serial)
    header += struct.pack("<I", len(fields)) + fields
    return pad(header, 8) + body


def main():
    path, method, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    sock.sendall(b"\0AUTH EXTERNAL " + str(os.getuid()).encode().hex().encode() + b"\r\n")
    if not sock.recv(4096).startswith(b"OK "):
        sys.exit("authentication refused")
    sock.sendall(b"NEGOTIATE_UNIX_FD\r\n")
    if not sock.recv(4096).startswith(b"AGREE_UNIX_FD"):
        sys.exit("the bus refuses fd passing")
    sock.sendall(b"BEGIN\r\n")
    sock.sendall(message(1, "/org/freedesktop/DBus", "org.freedesktop.DBus", "Hello",
                         "org.freedesktop.DBus"))
    pid = struct.pack("<I", os.getpid())
    for serial in range(2, count + 2):
        if method == "GetNamespace":
            body = pid + string("net")
            signature = "us"
        else:
            body = pid + struct.pack("<I", 0)  # an empty "as": every type
            signature = "uas"
        sock.sendall(message(serial, "/org/nsfd1", "org.nsfd1.Manager", method, "org.nsfd1",
                             signature, body))
    print("sent", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()

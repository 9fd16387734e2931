#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A small Varlink client on Python's standard library alone, with fd passing.

Varlink (varlink.org): JSON objects, each ended by a NUL byte, on an AF_UNIX
stream socket. File descriptors are systemd's extension: SCM_RIGHTS sent with
the first byte of the message whose JSON names them by index.

As a module:

    with Connection("/run/nsfd/org.nsfd1.Manager") as varlink:
        reply, fds = varlink.call("org.nsfd1.Manager.GetNamespace",
                                  {"pid": 1, "type": "net"})
        netns = fds[reply["fileDescriptor"]]      # yours to close
        for reply, fds in varlink.stream("org.nsfd1.Manager.WatchExits"):
            ...

As a command, printing each reply as one line of JSON ("fds" added: where
each received fd points, from /proc/self/fd) and exiting 1 on an error reply:

    varlink_client.py SOCKET METHOD [PARAMETERS-JSON] [--more] [--oneway] [--fd PATH]...
"""

import argparse
import json
import os
import socket
import sys

MAX_FDS = 253  # SCM_MAX_FD


class VarlinkError(Exception):
    """An error reply: name is e.g. "org.varlink.service.MethodNotFound"."""

    def __init__(self, name, parameters):
        super().__init__(f"{name} {json.dumps(parameters)}")
        self.name = name
        self.parameters = parameters


class Connection:
    def __init__(self, path, timeout=10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self._buffer = b""
        self._fds_at = []  # [offset in _buffer, [fds]] of messages read in part

    def close(self):
        for _, fds in self._fds_at:
            for fd in fds:
                os.close(fd)
        self._fds_at = []
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, method, parameters=None, fds=(), more=False, oneway=False):
        """Sends one call; `fds` (ints, still the caller's) go with its first byte."""
        message = {"method": method, "parameters": parameters or {}}
        if more:
            message["more"] = True
        if oneway:
            message["oneway"] = True
        data = json.dumps(message).encode() + b"\0"
        sent = socket.send_fds(self.sock, [data], list(fds)) if fds else 0
        self.sock.sendall(data[sent:])

    def _read(self):
        data, fds, flags, _ = socket.recv_fds(self.sock, 65536, MAX_FDS)
        if not data:
            for fd in fds:
                os.close(fd)
            raise EOFError("the server closed the connection")
        if fds:
            # The fds belong to the last message that starts in this read.
            start = len(self._buffer) if not self._buffer or self._buffer.endswith(b"\0") else None
            for i, byte in enumerate(data[:-1]):
                if byte == 0:
                    start = len(self._buffer) + i + 1
            if start is None:
                for fd in fds:
                    os.close(fd)
                raise ValueError("fds arrived in the middle of a message")
            self._fds_at.append([start, fds])
        self._buffer += data

    def receive(self):
        """The next reply as (message dict, [fds]); the fds are the caller's to close."""
        while b"\0" not in self._buffer:
            self._read()
        end = self._buffer.index(b"\0")
        message = json.loads(self._buffer[:end])
        self._buffer = self._buffer[end + 1:]
        fds = []
        if self._fds_at and self._fds_at[0][0] == 0:
            fds = self._fds_at.pop(0)[1]
        for entry in self._fds_at:
            entry[0] -= end + 1
        return message, fds

    def _result(self, message, fds):
        if "error" in message:
            for fd in fds:
                os.close(fd)
            raise VarlinkError(message["error"], message.get("parameters", {}))
        return message.get("parameters", {}), fds

    def call(self, method, parameters=None, fds=()):
        """One call, one reply: (parameters, [fds]). Raises VarlinkError."""
        self.send(method, parameters, fds)
        return self._result(*self.receive())

    def stream(self, method, parameters=None, fds=()):
        """A call with "more": yields (parameters, [fds]) until the last reply."""
        self.send(method, parameters, fds, more=True)
        while True:
            message, received = self.receive()
            yield self._result(message, received)
            if not message.get("continues"):
                return


def main(argv):
    parser = argparse.ArgumentParser(description="Call a Varlink method.")
    parser.add_argument("socket")
    parser.add_argument("method")
    parser.add_argument("parameters", nargs="?", default="{}")
    parser.add_argument("--more", action="store_true")
    parser.add_argument("--oneway", action="store_true")
    parser.add_argument("--fd", action="append", default=[], help="open PATH and send its fd")
    args = parser.parse_args(argv)

    sent = [os.open(path, os.O_RDONLY | os.O_CLOEXEC) for path in args.fd]
    with Connection(args.socket) as varlink:
        varlink.send(args.method, json.loads(args.parameters), sent, args.more, args.oneway)
        for fd in sent:
            os.close(fd)
        if args.oneway:
            return 0
        while True:
            message, fds = varlink.receive()
            message["fds"] = [os.readlink(f"/proc/self/fd/{fd}") for fd in fds]
            for fd in fds:
                os.close(fd)
            print(json.dumps(message, sort_keys=True), flush=True)
            if "error" in message:
                return 1
            if not message.get("continues"):
                return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A D-Bus connection handed on by the process that made it, for
tests/integration/sandbox_test.cpp and polkit_daemon_test.cpp (python3-dbus, which,
unlike sd-bus, lets a forked child go on with its parent's connection).

    dbus_handoff.py foreign ADDRESS
        A connects and exits; its child, pid 1 of a new pid namespace, calls
        GetProcessInfo(1) on A's connection. Prints the D-Bus error name, or "ok".
    dbus_handoff.py reuse ADDRESS UID PID
        As UID, A connects and asks for PID's net namespace (polkit is asked
        about A), then exits; its pid is taken by a root process; A's child asks
        again on A's connection. Prints "first: NAME", "reused: yes|no",
        "second: NAME: MESSAGE".
    dbus_handoff.py setgid ADDRESS UID GID PROGRAM
        As UID and GID (no supplementary groups), A connects, forks a child,
        and execs PROGRAM (a setgid copy of sleep: its egid changes); the child,
        once A's egid has changed, calls OpenSocket(child's pid, AF_INET,
        SOCK_STREAM, 0) on A's connection, then kills A. Prints the D-Bus error
        name, or "ok".
Run as root. Reaps every process it starts.
"""

import ctypes
import os
import signal
import sys
import time

import dbus  # python3-dbus: run by /usr/bin/python3

libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWPID = 0x20000000
PR_SET_CHILD_SUBREAPER = 36


def call(conn, method, signature, args):
    try:
        conn.call_blocking("org.nsfd1", "/org/nsfd1", "org.nsfd1.Manager", method, signature, args)
        return "ok"
    except dbus.DBusException as e:
        return f"{e.get_dbus_name()}: {e.get_dbus_message()}"


def wait_for_parent_to_exit(parent):
    while os.getppid() == parent:
        time.sleep(0.01)


def reap_all():
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def foreign(address, out):
    a = os.getpid()
    conn = dbus.bus.BusConnection(address)
    if os.fork() != 0:
        os._exit(0)
    wait_for_parent_to_exit(a)
    if libc.unshare(CLONE_NEWPID) != 0:
        os.write(out, b"unshare failed")
        os._exit(1)
    c = os.fork()
    if c == 0:
        result = call(conn, "GetProcessInfo", "u", (1,))
        os.write(out, result.split(":")[0].encode())
        os._exit(0)
    os.waitpid(c, 0)
    os._exit(0)


def reuse_first(address, uid, pid, out, go):
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    a = os.getpid()
    conn = dbus.bus.BusConnection(address)
    first = call(conn, "GetNamespace", "us", (pid, "net"))
    os.write(out, f"first: {first.split(':')[0]}\n".encode())
    if os.fork() != 0:
        os._exit(0)
    wait_for_parent_to_exit(a)
    os.read(go, 1)  # the pid is someone else's now
    second = call(conn, "GetNamespace", "us", (pid, "net"))
    os.write(out, f"second: {second}\n".encode())
    os._exit(0)


def egid_of(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Gid:"):
                return int(line.split()[2])
    return -1


def setgid_exec(address, uid, gid, program, out):
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    a = os.getpid()
    conn = dbus.bus.BusConnection(address)
    if os.fork() != 0:
        os.execv(program, ["sleep", "30"])
    for _ in range(500):
        if egid_of(a) != gid:
            break
        time.sleep(0.01)
    if egid_of(a) == gid:
        os.write(out, b"the setgid program did not run")
    else:
        result = call(conn, "OpenSocket", "uiii", (os.getpid(), 2, 1, 0))
        os.write(out, result.split(":")[0].encode())
    os.kill(a, signal.SIGKILL)
    os._exit(0)


def take_pid(wanted):
    """A root process with pid `wanted` (ns_last_pid), or None."""
    for _ in range(200):
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(wanted - 1))
        child = os.fork()
        if child == 0:
            signal.pause()
            os._exit(0)
        if child == wanted:
            return child
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
    return None


def main(argv):
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    r, w = os.pipe()
    go_r, go_w = os.pipe()
    mode, address = argv[0], argv[1]
    a = os.fork()
    if a == 0:
        os.close(r)
        os.close(go_w)
        if mode == "foreign":
            foreign(address, w)
        elif mode == "setgid":
            setgid_exec(address, int(argv[2]), int(argv[3]), argv[4], w)
        else:
            reuse_first(address, int(argv[2]), int(argv[3]), w, go_r)
        os._exit(0)
    os.close(w)
    os.close(go_r)
    os.waitpid(a, 0)
    taker = None
    if mode == "reuse":
        taker = take_pid(a)
        os.write(sys.stdout.fileno(), f"reused: {'yes' if taker else 'no'}\n".encode())
        os.write(go_w, b"x")
    output = b""
    while chunk := os.read(r, 4096):
        output += chunk
    if taker:
        os.kill(taker, signal.SIGKILL)
    reap_all()
    sys.stdout.write(output.decode())
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])

#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Drives a real nsfdd's Varlink socket for tests/integration/varlink_test.cpp,
as a client that is not nsfd's C++ code (Python's standard library alone).

    nsfd_check.py methods SOCKET PID     every method on PID (a same-uid process); prints "ok"
    nsfd_check.py table SOCKET PID ID [PIDFD] [spawn=PID2]
                                         the authorization table's actions: "name: outcome" lines
                                         (PIDFD: an inherited pidfd of PID, for a caller that
                                         cannot name PID itself); with spawn=, Spawn rows too,
                                         on PID (in the caller's namespaces) and on PID2 (in
                                         namespaces of its own)
    nsfd_check.py watch SOCKET COUNT [PID...]
                                         tracks each PID, prints "watching" once WatchExits
                                         is sent, then its first COUNT replies
    nsfd_check.py foreign SOCKET PID     as a caller in another pid namespace; prints "ok"
    nsfd_check.py hold SOCKET            one call, "connected", then "eof" when nsfdd hangs up
    nsfd_check.py sandbox SOCKET         as pid 1 of a sandbox: its own processes, by pidfd and
                                         id, and its init (sandbox_test.cpp): "name: outcome" lines
"""

import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from varlink_client import Connection, VarlinkError  # noqa: E402

M = "org.nsfd1.Manager."


def link(fd):
    return os.readlink(f"/proc/self/fd/{fd}")


def close_all(fds):
    for fd in fds:
        os.close(fd)


def expect_error(varlink, method, parameters, name, parameter=None):
    try:
        _, fds = varlink.call(M + method, parameters)
        close_all(fds)
    except VarlinkError as e:
        assert e.name == name, f"{method} {parameters}: {e.name} {e.parameters}, wanted {name}"
        if parameter is not None:
            got = e.parameters.get("parameter")
            assert got == parameter, f"{method} {parameters}: parameter {got}, wanted {parameter}"
        if name.startswith(M):  # nsfd's own errors say what was attempted
            assert e.parameters.get("message"), f"{method} {parameters}: no message"
        return
    raise AssertionError(f"{method} {parameters} succeeded, wanted {name}")


def methods(path, pid):
    ns = {t: os.readlink(f"/proc/{pid}/ns/{t}") for t in os.listdir(f"/proc/{pid}/ns")}
    with Connection(path) as v:
        info, _ = v.call("org.varlink.service.GetInfo")
        assert M[:-1] in info["interfaces"], info
        idl, _ = v.call("org.varlink.service.GetInterfaceDescription", {"interface": M[:-1]})
        assert "method GetNamespace(" in idl["description"]

        reply, fds = v.call(M + "GetNamespace", {"pid": pid, "type": "net"})
        assert reply == {"fileDescriptor": 0} and len(fds) == 1, (reply, fds)
        assert link(fds[0]) == ns["net"], (link(fds[0]), ns["net"])
        close_all(fds)

        reply, fds = v.call(M + "GetNamespaces", {"pid": pid, "types": ["uts", "net"]})
        assert sorted(reply["namespaces"]) == ["net", "uts"] and len(fds) == 2, reply
        for name, index in reply["namespaces"].items():
            assert link(fds[index]) == ns[name], (name, link(fds[index]))
        close_all(fds)
        reply, fds = v.call(M + "GetNamespaces", {"pid": pid, "types": []})
        assert len(fds) == len(reply["namespaces"]) == len(ns), (reply, ns)
        for name, index in reply["namespaces"].items():
            assert link(fds[index]) == ns[name], (name, link(fds[index]))
        close_all(fds)

        tracked, _ = v.call(M + "TrackProcess", {"pid": pid})
        ident = tracked["id"]
        assert tracked["pid"] == pid and ident > 0, tracked
        pidfd = os.pidfd_open(pid)
        again, _ = v.call(M + "TrackProcess", {"pidfd": 0}, fds=[pidfd])
        os.close(pidfd)
        assert again["id"] == ident, (again, tracked)
        assert v.call(M + "GetProcess", {"pid": pid})[0] == {"id": ident}
        listed, _ = v.call(M + "ListProcesses")
        assert {"pid": pid, "id": ident} in listed["processes"], listed

        reply, fds = v.call(M + "GetNamespace", {"id": ident, "type": "uts"})
        assert link(fds[0]) == ns["uts"]
        close_all(fds)
        for named in ({"pid": pid}, {"id": ident}):
            info, _ = v.call(M + "GetProcessInfo", named)
            info = info["info"]
            assert info["Id"] == ident and info["Pid"] == pid and info["State"] == "running", info
            assert info["Euid"] == os.stat(f"/proc/{pid}").st_uid, info
            ids, _ = v.call(M + "GetNamespaceIds", named)
            assert sorted(ids["ids"]) == sorted(ns), ids
        reply, fds = v.call(M + "GetPidFd", {"id": ident})
        assert reply == {"fileDescriptor": 0} and link(fds[0]) == "anon_inode:[pidfd]", link(fds[0])
        close_all(fds)
        assert v.call(M + "SendSignal", {"id": ident, "signal": signal.SIGCONT})[0] == {}
        reply, fds = v.call(M + "GetFd", {"id": ident, "fd": 0})
        assert reply == {"fileDescriptor": 0} and link(fds[0]) == os.readlink(f"/proc/{pid}/fd/0")
        close_all(fds)
        service, _ = v.call(M + "GetServiceInfo")
        assert service["trackedProcesses"] >= 1 and service["version"], service
        assert "pidfs" in service["kernelFeatures"], service

        # Checked against the IDL before any handler runs: undeclared, missing
        # and mistyped parameters, and unknown enum values, as sd-varlink does.
        idl = "org.varlink.service.InvalidParameter"
        expect_error(v, "GetNamespace", {"pid": str(pid), "type": "net"}, idl, "pid")
        expect_error(v, "GetNamespace", {"pid": float(pid), "type": "net"}, idl, "pid")
        expect_error(v, "GetNamespace", {"pid": True, "type": "net"}, idl, "pid")
        expect_error(v, "GetNamespace", {"pid": pid, "type": "Net"}, idl, "type")
        expect_error(v, "GetNamespace", {"pid": pid}, idl, "type")
        expect_error(v, "GetNamespaces", {"pid": pid, "types": "net"}, idl, "types")
        expect_error(v, "GetNamespace", {"pid": pid, "type": "net", "extra": 1}, idl, "extra")
        # Then values of the right type that nsfdd cannot use, each naming its parameter.
        bad = "org.nsfd1.Manager.InvalidArgument"
        expect_error(v, "GetNamespace", {"pid": pid, "id": ident, "type": "net"}, bad, "id")
        expect_error(v, "GetNamespace", {"type": "net"}, bad, "pid")
        expect_error(v, "GetNamespace", {"pid": -1, "type": "net"}, bad, "pid")
        expect_error(v, "SendSignal", {"id": ident, "signal": 4096}, bad, "signal")
        expect_error(v, "TrackProcess", {"pidfd": 0}, bad, "pidfd")
        expect_error(v, "GetNamespace", {"id": 1, "type": "net"}, "org.nsfd1.Manager.NotTracked")
        expect_error(v, "GetProcess", {"pid": 999999}, "org.nsfd1.Manager.NotTracked")
        try:
            v.call(M + "WatchExits")
            raise AssertionError("WatchExits without more")
        except VarlinkError as e:
            assert e.name == "org.varlink.service.ExpectedMore", e.name

        assert v.call(M + "UntrackProcess", {"id": ident})[0] == {}
        expect_error(v, "UntrackProcess", {"id": ident}, "org.nsfd1.Manager.NotTracked")
    print("ok")


def spawn_true(v, named, types):
    """Spawn /bin/true in the `types` namespaces of the process `named`, its
    stdio /dev/null and its working directory /; ok only once its last reply,
    waitStatus 0, has come (its first, {pid, pidfd}, checked on the way)."""
    fds = [os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC),
           os.open("/dev/null", os.O_WRONLY | os.O_CLOEXEC),
           os.open("/dev/null", os.O_WRONLY | os.O_CLOEXEC),
           os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)]
    parameters = dict(named, namespaces=types, argv=["/bin/true"],
                      environment=["PATH=/usr/bin:/bin"],
                      stdin=0, stdout=1, stderr=2, workingDirectory=3)
    replies = v.stream(M + "Spawn", parameters, fds=fds)
    try:
        started, received = next(replies)  # sends the call with its fds
    finally:
        close_all(fds)
    close_all(received)
    assert started.get("pid", 0) > 0 and started.get("pidfd") == 0 and len(received) == 1, \
        (started, received)
    last, received = next(replies)
    close_all(received)
    assert next(replies, None) is None, "a reply after the last"
    if last.get("waitStatus") != 0:
        raise VarlinkError(f"test.WaitStatus{last.get('waitStatus')}", last)


# The rows of the authorization table (authorization_table_test.cpp) that Varlink has,
# and Spawn's (Varlink only) if spawn_pid is given.
def table(path, pid, ident, inherited=None, spawn_pid=None):
    def with_fds(v, method, parameters):
        _, fds = v.call(M + method, parameters)
        close_all(fds)

    def listed(v):
        if not any(p["id"] == ident for p in v.call(M + "ListProcesses")[0]["processes"]):
            raise VarlinkError("test.NotListed", {})

    def by_pidfd(v):
        # Anyone may open one, if it can name the process.
        pidfd = os.pidfd_open(pid) if inherited is None else os.dup(inherited)
        try:
            v.call(M + "TrackProcess", {"pidfd": 0}, fds=[pidfd])
        finally:
            os.close(pidfd)

    rows = [
        ("TrackProcess", lambda v: v.call(M + "TrackProcess", {"pid": pid})),
        ("TrackProcess pidfd", by_pidfd),
        ("GetProcess", lambda v: v.call(M + "GetProcess", {"pid": pid})),
        ("ListProcesses shows it", listed),
        ("GetNamespace net", lambda v: with_fds(v, "GetNamespace", {"pid": pid, "type": "net"})),
        ("GetNamespace mnt", lambda v: with_fds(v, "GetNamespace", {"pid": pid, "type": "mnt"})),
        ("GetNamespaces net uts",
         lambda v: with_fds(v, "GetNamespaces", {"pid": pid, "types": ["net", "uts"]})),
        ("GetProcessInfo", lambda v: v.call(M + "GetProcessInfo", {"pid": pid})),
        ("GetNamespace id net", lambda v: with_fds(v, "GetNamespace", {"id": ident, "type": "net"})),
        ("GetNamespaceIds id", lambda v: v.call(M + "GetNamespaceIds", {"id": ident})),
        ("GetProcessInfo id", lambda v: v.call(M + "GetProcessInfo", {"id": ident})),
        ("GetPidFd", lambda v: with_fds(v, "GetPidFd", {"id": ident})),
        ("SendSignal CONT", lambda v: v.call(M + "SendSignal", {"id": ident, "signal": 18})),
        ("GetFd 0", lambda v: with_fds(v, "GetFd", {"id": ident, "fd": 0})),
    ]
    if spawn_pid is not None:
        rows += [
            ("Spawn net, the caller's own", lambda v: spawn_true(v, {"pid": pid}, ["net"])),
            ("Spawn net", lambda v: spawn_true(v, {"pid": spawn_pid}, ["net"])),
            ("Spawn net uts", lambda v: spawn_true(v, {"pid": spawn_pid}, ["net", "uts"])),
            ("Spawn mnt", lambda v: spawn_true(v, {"pid": spawn_pid}, ["mnt"])),
        ]
    rows.append(("UntrackProcess", lambda v: v.call(M + "UntrackProcess", {"id": ident})))
    with Connection(path) as v:
        for name, action in rows:
            try:
                action(v)
                outcome = "ok"
            except VarlinkError as e:
                outcome = e.name.rsplit(".", 1)[-1]
            print(f"{name}: {outcome}")


def watch(path, count, pids):
    with Connection(path) as v:
        for pid in pids:
            v.call(M + "TrackProcess", {"pid": pid})
        v.send(M + "WatchExits", more=True)
        ready, fds = v.receive()
        close_all(fds)
        if ready.get("parameters") != {"ready": True} or not ready.get("continues"):
            raise SystemExit(f"WatchExits: expected the ready reply first, got {ready}")
        print("watching", flush=True)
        for _ in range(count):
            message, fds = v.receive()
            close_all(fds)
            if "error" in message:
                raise SystemExit(f"WatchExits: {message}")
            print(json.dumps(message["parameters"], sort_keys=True), flush=True)


def foreign(path, pid):
    """As a caller in another pid namespace than nsfdd's: pid is one of ours."""
    with Connection(path) as v:
        pidfd = os.pidfd_open(pid)
        tracked, _ = v.call(M + "TrackProcess", {"pidfd": 0}, fds=[pidfd])
        ident = tracked["id"]
        assert ident == os.fstat(pidfd).st_ino, (tracked, os.fstat(pidfd).st_ino)
        os.close(pidfd)
        assert tracked["pid"] == 0, tracked  # nsfdd's pid of it means nothing here
        expect_error(v, "GetProcessInfo", {"pid": pid}, "org.nsfd1.Manager.ForeignPidNamespace")
        expect_error(v, "GetNamespace", {"pid": pid, "type": "net"},
                     "org.nsfd1.Manager.ForeignPidNamespace")
        info, _ = v.call(M + "GetProcessInfo", {"id": ident})
        assert info["info"]["Id"] == ident and info["info"]["Pid"] == 0, info
        listed, _ = v.call(M + "ListProcesses")
        assert {"pid": 0, "id": ident} in listed["processes"], listed
        assert v.call(M + "UntrackProcess", {"id": ident})[0] == {}
    print("ok")


def hold(path):
    with Connection(path, timeout=None) as v:
        v.call(M + "GetServiceInfo")
        print("connected", flush=True)
        try:
            v.receive()
            print("unexpected reply")
        except EOFError:
            print("eof", flush=True)


def sandbox(path):
    """As pid 1 of a user and pid namespace of its own."""
    lines = []

    def cell(name, action):
        try:
            action()
            lines.append(f"{name}: ok")
        except VarlinkError as e:
            lines.append(f"{name}: {e.name.rsplit('.', 1)[-1]}")

    child = os.fork()
    if child == 0:
        signal.pause()
        os._exit(0)
    with Connection(path) as v:
        own = os.pidfd_open(child)
        ident = {}

        def track(pidfd, key):
            ident[key] = v.call(M + "TrackProcess", {"pidfd": 0}, fds=[pidfd])[0]["id"]

        def listed():
            if not any(p["id"] == ident["own"] for p in v.call(M + "ListProcesses")[0]["processes"]):
                raise VarlinkError("test.NotListed", {})

        def mnt():
            _, fds = v.call(M + "GetNamespace", {"id": ident["own"], "type": "mnt"})
            try:
                if os.fstat(fds[0]).st_ino != os.stat("/proc/self/ns/mnt").st_ino:
                    raise VarlinkError("test.WrongNamespace", {})
            finally:
                close_all(fds)

        def pidfd():
            close_all(v.call(M + "GetPidFd", {"id": ident["own"]})[1])

        cell("track by pidfd", lambda: track(own, "own"))
        os.close(own)
        cell("raw pid", lambda: v.call(M + "GetProcessInfo", {"pid": child}))
        cell("listed", listed)
        cell("info by id", lambda: v.call(M + "GetProcessInfo", {"id": ident["own"]}))
        cell("mnt namespace by id", mnt)
        cell("pidfd by id", pidfd)
        cell("SIGTERM by id",
             lambda: v.call(M + "SendSignal", {"id": ident["own"], "signal": signal.SIGTERM}))
        _, status = os.waitpid(child, 0)
        lines.append(f"reaped by: {os.WTERMSIG(status) if os.WIFSIGNALED(status) else -1}")
        init = os.pidfd_open(1)  # ourselves, as the sandbox names us
        cell("track init", lambda: track(init, "init"))
        os.close(init)
        # Were either allowed, this process would die here and say nothing.
        cell("SIGKILL to init",
             lambda: v.call(M + "SendSignal", {"id": ident["init"], "signal": signal.SIGKILL}))
        cell("SIGTERM to init",
             lambda: v.call(M + "SendSignal", {"id": ident["init"], "signal": signal.SIGTERM}))
    print("\n".join(lines))


def main(argv):
    command, path = argv[0], argv[1]
    if command == "methods":
        methods(path, int(argv[2]))
    elif command == "table":
        options = dict(arg.split("=", 1) for arg in argv[4:] if "=" in arg)
        positional = [arg for arg in argv[4:] if "=" not in arg]
        table(path, int(argv[2]), int(argv[3]), int(positional[0]) if positional else None,
              int(options["spawn"]) if "spawn" in options else None)
    elif command == "watch":
        watch(path, int(argv[2]), [int(p) for p in argv[3:]])
    elif command == "foreign":
        foreign(path, int(argv[2]))
    elif command == "hold":
        hold(path)
    elif command == "sandbox":
        sandbox(path)
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv[1:])

// SPDX-License-Identifier: LGPL-2.1-or-later
// Every method against every kind of caller, as real users, cell by cell
// against the table in SECURITY.md.
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <sstream>

#include "fixture.hpp"

namespace nsfd::test {
namespace {

// What a caller gets: "ok", or the last part of the D-Bus error's name.
std::string outcome(const std::string& result) {
    if (result.rfind("error:", 0) != 0) {
        return result;
    }
    std::string name = result.substr(6, result.find(':', 6) - 6);
    return name.substr(name.rfind('.') + 1);
}

struct Column {
    const char* name;
    uid_t uid;
    std::vector<gid_t> groups;
    bool nonDumpableTarget;
    bool sandboxed;  // in a user and pid namespace of its own (asSandboxedUser)
};

// The target as each action names it: its pid in nsfdd's pid namespace, a
// pidfd the caller inherits (opened outside: a sandbox cannot name it), its path.
struct Named {
    uint32_t pid;
    int pidfd;
    const std::string& path;
};

using Action = std::function<void(sdbus::IConnection&, const Named& target)>;

// Each action throws sdbus::Error if denied; ListProcesses answers whether it shows the target.
const std::vector<std::pair<const char*, Action>>& actions() {
    static const std::vector<std::pair<const char*, Action>> all = {
        {"TrackProcess", [](auto& bus, const Named& t) { ManagerProxy(bus).TrackProcess(t.pid); }},
        {"TrackProcessByPidFd",
         [](auto& bus, const Named& t) {
             ManagerProxy(bus).TrackProcessByPidFd(sdbus::UnixFd(t.pidfd));  // dup()s it
         }},
        {"GetProcess", [](auto& bus, const Named& t) { ManagerProxy(bus).GetProcess(t.pid); }},
        {"ListProcesses shows it",
         [](auto& bus, const Named& t) {
             for (const auto& entry : ManagerProxy(bus).ListProcesses()) {
                 if (entry.get<2>() == t.path) {
                     return;
                 }
             }
             throw sdbus::Error("test.NotListed", "not in the list");
         }},
        {"GetNamespace net",
         [](auto& bus, const Named& t) { ManagerProxy(bus).GetNamespace(t.pid, "net"); }},
        {"GetNamespace mnt",
         [](auto& bus, const Named& t) { ManagerProxy(bus).GetNamespace(t.pid, "mnt"); }},
        {"GetNamespaces net uts",
         [](auto& bus, const Named& t) {
             ManagerProxy(bus).GetNamespaces(t.pid, {"net", "uts"});
         }},
        {"GetProcessInfo",
         [](auto& bus, const Named& t) { ManagerProxy(bus).GetProcessInfo(t.pid); }},
        {"Process.GetNamespace net",
         [](auto& bus, const Named& t) { ProcessProxy(bus, t.path).GetNamespace("net"); }},
        {"Process.GetNamespaceIds",
         [](auto& bus, const Named& t) { ProcessProxy(bus, t.path).GetNamespaceIds(); }},
        {"Process.GetInfo", [](auto& bus, const Named& t) { ProcessProxy(bus, t.path).GetInfo(); }},
        {"Process.GetPidFd",
         [](auto& bus, const Named& t) { ProcessProxy(bus, t.path).GetPidFd(); }},
        {"Process.SendSignal CONT",
         [](auto& bus, const Named& t) { ProcessProxy(bus, t.path).SendSignal(SIGCONT); }},
        {"Process.GetFd 0", [](auto& bus, const Named& t) { ProcessProxy(bus, t.path).GetFd(0); }},
        // The targets live in the callers' own network namespace (see
        // socket_test.cpp for targets elsewhere).
        {"OpenSocket inet stream",
         [](auto& bus, const Named& t) {
             ManagerProxy(bus).OpenSocket(t.pid, AF_INET, SOCK_STREAM, 0);
         }},
        {"Process.OpenSocket inet stream",
         [](auto& bus, const Named& t) {
             ProcessProxy(bus, t.path).OpenSocket(AF_INET, SOCK_STREAM, 0);
         }},
        // The object as a whole: properties, and the listings of the bus's standard interfaces.
        {"Process property Pid",
         [](auto& bus, const Named& t) { ProcessProxy(bus, t.path).Pid(); }},
        {"GetManagedObjects shows it",
         [](auto& bus, const Named& t) {
             if (ManagerProxy(bus).GetManagedObjects().count(sdbus::ObjectPath(t.path)) == 0) {
                 throw sdbus::Error("test.NotListed", "not among the managed objects");
             }
         }},
        {"Introspect lists it",
         [](auto& bus, const Named& t) {
             auto parent = sdbus::createProxy(bus, nsfd::dbus::kBusName, "/org/nsfd1/process");
             std::string xml;
             parent->callMethod("Introspect")
                 .onInterface("org.freedesktop.DBus.Introspectable")
                 .storeResultsTo(xml);
             std::string node = "<node name=\"" + t.path.substr(t.path.rfind('/') + 1) + "\"";
             if (xml.find(node) == std::string::npos) {
                 throw sdbus::Error("test.NotListed", "not among the children");
             }
         }},
        // Last: the test tracks the target again after it.
        {"Process.Untrack", [](auto& bus, const Named& t) { ProcessProxy(bus, t.path).Untrack(); }},
    };
    return all;
}

class AuthorizationTableTest : public DaemonTest {
  protected:
    std::string config() const override { return kGrantConfig; }  // group "users": net, uts, info

    void SetUp() override {
        if (kUser == 0 || kOtherUser == 0) {
            GTEST_SKIP() << "users nsfd-test-a and nsfd-test-b are missing (scripts/test-users)";
        }
        DaemonTest::SetUp();
    }
    // Each action as each column's caller, on a target root tracks: "name: cell..." lines.
    std::string tableOf(const std::vector<Column>& columns, const Child& dumpable,
                        const Child& nonDumpable) {
        std::map<std::string, std::vector<std::string>> cells;
        for (const Column& column : columns) {
            const Child& target = column.nonDumpableTarget ? nonDumpable : dumpable;
            auto pid = static_cast<uint32_t>(target.pid());
            // Inherited by the caller's process across fork(2); closed here.
            UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, target.pid(), 0)));
            EXPECT_TRUE(pidfd.ok());
            for (const auto& row : actions()) {
                const auto& name = row.first;
                const auto& action = row.second;  // a lambda may not capture a structured binding
                // Root tracks the target (again, after an Untrack) before each cell.
                std::string path = manager_->TrackProcess(pid);
                Named named{pid, pidfd.get(), path};
                auto call = [&](sdbus::IConnection& bus) {
                    action(bus, named);
                    return std::string("ok");
                };
                std::string result =
                    column.sandboxed ? asSandboxedUser(column.uid, column.uid, column.groups, call)
                                     : asUser(column.uid, column.uid, column.groups, call);
                cells[name].push_back(outcome(result));
            }
        }
        std::ostringstream table;
        table << '\n';
        for (const auto& [name, action] : actions()) {
            table << name << ':';
            for (const std::string& cell : cells[name]) {
                table << ' ' << cell;
            }
            table << '\n';
        }
        return table.str();
    }
};

TEST_F(AuthorizationTableTest, EveryMethodForEveryKindOfCaller) {
    // Targets: two processes of nsfd-test-a, one dumpable, one not; root tracks both.
    Child dumpable = spawnAs(kUser, true);
    Child nonDumpable = spawnAs(kUser, false);
    const std::vector<Column> columns = {
        {"root", 0, {}, false, false},
        {"same uid", kUser, {}, false, false},
        {"same uid, target not dumpable", kUser, {}, true, false},
        {"other uid", kOtherUser, {}, false, false},
        {"other uid, granted group", kOtherUser, {kGrantedGroup}, false, false},
        // The target's own user, and a member of the granted group, each in a
        // sandbox (a user and pid namespace of its own) that the target is
        // outside of: the kernel would not let them name it, and the grant
        // is not marked `sandboxed`.
        {"same uid, in a sandbox", kUser, {}, false, true},
        {"other uid, granted group, in a sandbox", kOtherUser, {kGrantedGroup}, false, true},
    };
    const char* const expected = R"(
TrackProcess: ok ok ok AccessDenied ok ForeignPidNamespace ForeignPidNamespace
TrackProcessByPidFd: ok ok ok AccessDenied ok AccessDenied AccessDenied
GetProcess: ok ok ok NotTracked ok ForeignPidNamespace ForeignPidNamespace
ListProcesses shows it: ok ok ok NotListed ok NotListed NotListed
GetNamespace net: ok ok AccessDenied AccessDenied ok ForeignPidNamespace ForeignPidNamespace
GetNamespace mnt: ok ok AccessDenied AccessDenied AccessDenied ForeignPidNamespace ForeignPidNamespace
GetNamespaces net uts: ok ok AccessDenied AccessDenied ok ForeignPidNamespace ForeignPidNamespace
GetProcessInfo: ok ok ok AccessDenied ok ForeignPidNamespace ForeignPidNamespace
Process.GetNamespace net: ok ok AccessDenied UnknownObject ok UnknownObject UnknownObject
Process.GetNamespaceIds: ok ok ok UnknownObject ok UnknownObject UnknownObject
Process.GetInfo: ok ok ok UnknownObject ok UnknownObject UnknownObject
Process.GetPidFd: ok ok AccessDenied UnknownObject AccessDenied UnknownObject UnknownObject
Process.SendSignal CONT: ok ok ok UnknownObject AccessDenied UnknownObject UnknownObject
Process.GetFd 0: ok AccessDenied AccessDenied UnknownObject AccessDenied UnknownObject UnknownObject
OpenSocket inet stream: ok ok ok ok ok ForeignPidNamespace ForeignPidNamespace
Process.OpenSocket inet stream: ok ok ok UnknownObject ok UnknownObject UnknownObject
Process property Pid: ok ok ok UnknownObject ok UnknownObject UnknownObject
GetManagedObjects shows it: ok ok ok NotListed ok NotListed NotListed
Introspect lists it: ok ok ok NotListed ok NotListed NotListed
Process.Untrack: ok ok ok UnknownObject ok UnknownObject UnknownObject
)";
    std::string table = tableOf(columns, dumpable, nonDumpable);
    EXPECT_EQ(table, expected)
        << "columns: root | same uid | same uid, target not dumpable | other uid | other uid, "
           "granted group | same uid, in a sandbox | other uid, granted group, in a sandbox";
    dumpable.release(0);
    nonDumpable.release(0);
    dumpable.reap();
    nonDumpable.reap();
}

// The grant of the table, marked for sandboxes, and with pidfds.
class SandboxGrantTableTest : public AuthorizationTableTest {
  protected:
    std::string config() const override { return kSandboxGrantConfig; }
};

TEST_F(SandboxGrantTableTest, AGrantMarkedSandboxedReachesOutsideTheSandbox) {
    // The target outside the sandbox, of another user than the caller: what
    // the caller gets, the grant gives. Raw pids stay refused (they would be
    // the sandbox's pids); signals and fds are no grant's.
    Child dumpable = spawnAs(kUser, true);
    Child nonDumpable = spawnAs(kUser, false);
    const std::vector<Column> columns = {
        {"other uid, granted group, in a sandbox", kOtherUser, {kGrantedGroup}, false, true},
        {"other uid, in a sandbox", kOtherUser, {}, false, true},
    };
    const char* const expected = R"(
TrackProcess: ForeignPidNamespace ForeignPidNamespace
TrackProcessByPidFd: ok AccessDenied
GetProcess: ForeignPidNamespace ForeignPidNamespace
ListProcesses shows it: ok NotListed
GetNamespace net: ForeignPidNamespace ForeignPidNamespace
GetNamespace mnt: ForeignPidNamespace ForeignPidNamespace
GetNamespaces net uts: ForeignPidNamespace ForeignPidNamespace
GetProcessInfo: ForeignPidNamespace ForeignPidNamespace
Process.GetNamespace net: ok UnknownObject
Process.GetNamespaceIds: ok UnknownObject
Process.GetInfo: ok UnknownObject
Process.GetPidFd: ok UnknownObject
Process.SendSignal CONT: AccessDenied UnknownObject
Process.GetFd 0: AccessDenied UnknownObject
OpenSocket inet stream: ForeignPidNamespace ForeignPidNamespace
Process.OpenSocket inet stream: AccessDenied UnknownObject
Process property Pid: ok UnknownObject
GetManagedObjects shows it: ok NotListed
Introspect lists it: ok NotListed
Process.Untrack: ok UnknownObject
)";
    EXPECT_EQ(tableOf(columns, dumpable, nonDumpable), expected)
        << "columns: other uid, granted group, in a sandbox | other uid, in a sandbox";
    dumpable.release(0);
    nonDumpable.release(0);
    dumpable.reap();
    nonDumpable.reap();
}

}  // namespace
}  // namespace nsfd::test

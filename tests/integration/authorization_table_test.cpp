// SPDX-License-Identifier: LGPL-2.1-or-later
// Every method against every kind of caller, as real users, cell by cell
// against the table in SECURITY.md.
#include <sys/socket.h>

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
};

using Action = std::function<void(sdbus::IConnection&, uint32_t pid, const std::string& path)>;

// Each action throws sdbus::Error if denied; ListProcesses answers whether it shows the target.
const std::vector<std::pair<const char*, Action>>& actions() {
    static const std::vector<std::pair<const char*, Action>> all = {
        {"TrackProcess",
         [](auto& bus, uint32_t pid, auto&) { ManagerProxy(bus).TrackProcess(pid); }},
        {"TrackProcessByPidFd",
         [](auto& bus, uint32_t pid, auto&) {
             PidFd pidfd = PidFd::open(static_cast<pid_t>(pid));  // anyone may open one
             ManagerProxy(bus).TrackProcessByPidFd(sdbus::UnixFd(pidfd.get()));
         }},
        {"GetProcess", [](auto& bus, uint32_t pid, auto&) { ManagerProxy(bus).GetProcess(pid); }},
        {"ListProcesses shows it",
         [](auto& bus, uint32_t, const std::string& path) {
             for (const auto& entry : ManagerProxy(bus).ListProcesses()) {
                 if (entry.get<2>() == path) {
                     return;
                 }
             }
             throw sdbus::Error("test.NotListed", "not in the list");
         }},
        {"GetNamespace net",
         [](auto& bus, uint32_t pid, auto&) { ManagerProxy(bus).GetNamespace(pid, "net"); }},
        {"GetNamespace mnt",
         [](auto& bus, uint32_t pid, auto&) { ManagerProxy(bus).GetNamespace(pid, "mnt"); }},
        {"GetNamespaces net uts",
         [](auto& bus, uint32_t pid, auto&) {
             ManagerProxy(bus).GetNamespaces(pid, {"net", "uts"});
         }},
        {"GetProcessInfo",
         [](auto& bus, uint32_t pid, auto&) { ManagerProxy(bus).GetProcessInfo(pid); }},
        {"Process.GetNamespace net",
         [](auto& bus, uint32_t, auto& path) { ProcessProxy(bus, path).GetNamespace("net"); }},
        {"Process.GetNamespaceIds",
         [](auto& bus, uint32_t, auto& path) { ProcessProxy(bus, path).GetNamespaceIds(); }},
        {"Process.GetInfo",
         [](auto& bus, uint32_t, auto& path) { ProcessProxy(bus, path).GetInfo(); }},
        {"Process.GetPidFd",
         [](auto& bus, uint32_t, auto& path) { ProcessProxy(bus, path).GetPidFd(); }},
        {"Process.SendSignal CONT",
         [](auto& bus, uint32_t, auto& path) { ProcessProxy(bus, path).SendSignal(SIGCONT); }},
        {"Process.GetFd 0",
         [](auto& bus, uint32_t, auto& path) { ProcessProxy(bus, path).GetFd(0); }},
        // The targets live in the callers' own network namespace (see
        // socket_test.cpp for targets elsewhere).
        {"OpenSocket inet stream",
         [](auto& bus, uint32_t pid, auto&) {
             ManagerProxy(bus).OpenSocket(pid, AF_INET, SOCK_STREAM, 0);
         }},
        {"Process.OpenSocket inet stream",
         [](auto& bus, uint32_t, auto& path) {
             ProcessProxy(bus, path).OpenSocket(AF_INET, SOCK_STREAM, 0);
         }},
        // The object as a whole: properties, and the listings of the bus's standard interfaces.
        {"Process property Pid",
         [](auto& bus, uint32_t, auto& path) { ProcessProxy(bus, path).Pid(); }},
        {"GetManagedObjects shows it",
         [](auto& bus, uint32_t, const std::string& path) {
             if (ManagerProxy(bus).GetManagedObjects().count(sdbus::ObjectPath(path)) == 0) {
                 throw sdbus::Error("test.NotListed", "not among the managed objects");
             }
         }},
        {"Introspect lists it",
         [](auto& bus, uint32_t, const std::string& path) {
             auto parent = sdbus::createProxy(bus, nsfd::dbus::kBusName, "/org/nsfd1/process");
             std::string xml;
             parent->callMethod("Introspect")
                 .onInterface("org.freedesktop.DBus.Introspectable")
                 .storeResultsTo(xml);
             std::string node = "<node name=\"" + path.substr(path.rfind('/') + 1) + "\"";
             if (xml.find(node) == std::string::npos) {
                 throw sdbus::Error("test.NotListed", "not among the children");
             }
         }},
        // Last: the test tracks the target again after it.
        {"Process.Untrack",
         [](auto& bus, uint32_t, auto& path) { ProcessProxy(bus, path).Untrack(); }},
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
};

TEST_F(AuthorizationTableTest, EveryMethodForEveryKindOfCaller) {
    // Targets: two processes of nsfd-test-a, one dumpable, one not; root tracks both.
    Child dumpable = spawnAs(kUser, true);
    Child nonDumpable = spawnAs(kUser, false);
    const std::vector<Column> columns = {
        {"root", 0, {}, false},
        {"same uid", kUser, {}, false},
        {"same uid, target not dumpable", kUser, {}, true},
        {"other uid", kOtherUser, {}, false},
        {"other uid, granted group", kOtherUser, {kGrantedGroup}, false},
    };
    const char* const expected = R"(
TrackProcess: ok ok ok AccessDenied ok
TrackProcessByPidFd: ok ok ok AccessDenied ok
GetProcess: ok ok ok NotTracked ok
ListProcesses shows it: ok ok ok NotListed ok
GetNamespace net: ok ok AccessDenied AccessDenied ok
GetNamespace mnt: ok ok AccessDenied AccessDenied AccessDenied
GetNamespaces net uts: ok ok AccessDenied AccessDenied ok
GetProcessInfo: ok ok ok AccessDenied ok
Process.GetNamespace net: ok ok AccessDenied UnknownObject ok
Process.GetNamespaceIds: ok ok ok UnknownObject ok
Process.GetInfo: ok ok ok UnknownObject ok
Process.GetPidFd: ok ok AccessDenied UnknownObject AccessDenied
Process.SendSignal CONT: ok ok ok UnknownObject AccessDenied
Process.GetFd 0: ok AccessDenied AccessDenied UnknownObject AccessDenied
OpenSocket inet stream: ok ok ok ok ok
Process.OpenSocket inet stream: ok ok ok UnknownObject ok
Process property Pid: ok ok ok UnknownObject ok
GetManagedObjects shows it: ok ok ok NotListed ok
Introspect lists it: ok ok ok NotListed ok
Process.Untrack: ok ok ok UnknownObject ok
)";
    std::map<std::string, std::vector<std::string>> cells;
    for (const Column& column : columns) {
        const Child& target = column.nonDumpableTarget ? nonDumpable : dumpable;
        auto pid = static_cast<uint32_t>(target.pid());
        for (const auto& [name, action] : actions()) {
            // Root tracks the target (again, after an Untrack) before each cell.
            std::string path = manager_->TrackProcess(pid);
            std::string result =
                asUser(column.uid, column.uid, column.groups, [&](sdbus::IConnection& bus) {
                    action(bus, pid, path);
                    return std::string("ok");
                });
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
    EXPECT_EQ(table.str(), expected)
        << "columns: root | same uid | same uid, target not dumpable | other uid | other uid, "
           "granted group";
    dumpable.release(0);
    nonDumpable.release(0);
    dumpable.reap();
    nonDumpable.reap();
}

}  // namespace
}  // namespace nsfd::test

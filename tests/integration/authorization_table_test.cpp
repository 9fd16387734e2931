// SPDX-License-Identifier: LGPL-2.1-or-later
// Every method against every kind of caller, as real users, cell by cell
// against the table in SECURITY.md.
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

using Action = std::function<std::string(sdbus::IConnection&, uint32_t pid, const std::string&)>;

std::unique_ptr<sdbus::IProxy> manager(sdbus::IConnection& bus) {
    return sdbus::createProxy(bus, nsfd::dbus::kBusName, nsfd::dbus::kManagerPath);
}

std::unique_ptr<sdbus::IProxy> object(sdbus::IConnection& bus, const std::string& path) {
    return sdbus::createProxy(bus, nsfd::dbus::kBusName, path);
}

const std::vector<std::pair<const char*, Action>>& actions() {
    using sdbus::UnixFd;
    static const std::vector<std::pair<const char*, Action>> all = {
        {"TrackProcess",
         [](sdbus::IConnection& bus, uint32_t pid, const std::string&) {
             sdbus::ObjectPath path;
             manager(bus)
                 ->callMethod("TrackProcess")
                 .onInterface(dbus::kManagerInterface)
                 .withArguments(pid)
                 .storeResultsTo(path);
             return std::string("ok");
         }},
        {"TrackProcessByPidFd",
         [](sdbus::IConnection& bus, uint32_t pid, const std::string&) {
             PidFd pidfd = PidFd::open(static_cast<pid_t>(pid));  // anyone may open one
             sdbus::ObjectPath path;
             manager(bus)
                 ->callMethod("TrackProcessByPidFd")
                 .onInterface(dbus::kManagerInterface)
                 .withArguments(UnixFd(pidfd.get()))
                 .storeResultsTo(path);
             return std::string("ok");
         }},
        {"GetProcess",
         [](sdbus::IConnection& bus, uint32_t pid, const std::string&) {
             sdbus::ObjectPath path;
             manager(bus)
                 ->callMethod("GetProcess")
                 .onInterface(dbus::kManagerInterface)
                 .withArguments(pid)
                 .storeResultsTo(path);
             return std::string("ok");
         }},
        {"ListProcesses shows it",
         [](sdbus::IConnection& bus, uint32_t, const std::string& path) {
             std::vector<sdbus::Struct<uint32_t, uint64_t, sdbus::ObjectPath>> list;
             manager(bus)
                 ->callMethod("ListProcesses")
                 .onInterface(dbus::kManagerInterface)
                 .storeResultsTo(list);
             for (const auto& entry : list) {
                 if (entry.get<2>() == path) {
                     return std::string("yes");
                 }
             }
             return std::string("no");
         }},
        {"GetNamespace net",
         [](sdbus::IConnection& bus, uint32_t pid, const std::string&) {
             UnixFd fd;
             manager(bus)
                 ->callMethod("GetNamespace")
                 .onInterface(dbus::kManagerInterface)
                 .withArguments(pid, std::string("net"))
                 .storeResultsTo(fd);
             return std::string("ok");
         }},
        {"GetNamespace mnt",
         [](sdbus::IConnection& bus, uint32_t pid, const std::string&) {
             UnixFd fd;
             manager(bus)
                 ->callMethod("GetNamespace")
                 .onInterface(dbus::kManagerInterface)
                 .withArguments(pid, std::string("mnt"))
                 .storeResultsTo(fd);
             return std::string("ok");
         }},
        {"GetNamespaces net uts",
         [](sdbus::IConnection& bus, uint32_t pid, const std::string&) {
             std::map<std::string, UnixFd> fds;
             manager(bus)
                 ->callMethod("GetNamespaces")
                 .onInterface(dbus::kManagerInterface)
                 .withArguments(pid, std::vector<std::string>{"net", "uts"})
                 .storeResultsTo(fds);
             return std::string("ok");
         }},
        {"GetProcessInfo",
         [](sdbus::IConnection& bus, uint32_t pid, const std::string&) {
             std::map<std::string, sdbus::Variant> info;
             manager(bus)
                 ->callMethod("GetProcessInfo")
                 .onInterface(dbus::kManagerInterface)
                 .withArguments(pid)
                 .storeResultsTo(info);
             return std::string("ok");
         }},
        {"Process.GetNamespace net",
         [](sdbus::IConnection& bus, uint32_t, const std::string& path) {
             UnixFd fd;
             object(bus, path)
                 ->callMethod("GetNamespace")
                 .onInterface(dbus::kProcessInterface)
                 .withArguments(std::string("net"))
                 .storeResultsTo(fd);
             return std::string("ok");
         }},
        {"Process.GetNamespaceIds",
         [](sdbus::IConnection& bus, uint32_t, const std::string& path) {
             std::map<std::string, uint64_t> ids;
             object(bus, path)
                 ->callMethod("GetNamespaceIds")
                 .onInterface(dbus::kProcessInterface)
                 .storeResultsTo(ids);
             return std::string("ok");
         }},
        {"Process.GetInfo",
         [](sdbus::IConnection& bus, uint32_t, const std::string& path) {
             std::map<std::string, sdbus::Variant> info;
             object(bus, path)
                 ->callMethod("GetInfo")
                 .onInterface(dbus::kProcessInterface)
                 .storeResultsTo(info);
             return std::string("ok");
         }},
        {"Process.GetPidFd",
         [](sdbus::IConnection& bus, uint32_t, const std::string& path) {
             UnixFd fd;
             object(bus, path)
                 ->callMethod("GetPidFd")
                 .onInterface(dbus::kProcessInterface)
                 .storeResultsTo(fd);
             return std::string("ok");
         }},
        {"Process.SendSignal CONT",
         [](sdbus::IConnection& bus, uint32_t, const std::string& path) {
             object(bus, path)
                 ->callMethod("SendSignal")
                 .onInterface(dbus::kProcessInterface)
                 .withArguments(int32_t{SIGCONT});
             return std::string("ok");
         }},
        {"Process.GetFd 0",
         [](sdbus::IConnection& bus, uint32_t, const std::string& path) {
             UnixFd fd;
             object(bus, path)
                 ->callMethod("GetFd")
                 .onInterface(dbus::kProcessInterface)
                 .withArguments(int32_t{0})
                 .storeResultsTo(fd);
             return std::string("ok");
         }},
        {"Process.Untrack",  // last: the test tracks the target again after it
         [](sdbus::IConnection& bus, uint32_t, const std::string& path) {
             object(bus, path)->callMethod("Untrack").onInterface(dbus::kProcessInterface);
             return std::string("ok");
         }},
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
ListProcesses shows it: yes yes yes no yes
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
Process.Untrack: ok ok ok UnknownObject ok
)";
    std::map<std::string, std::vector<std::string>> cells;
    for (const Column& column : columns) {
        const Child& target = column.nonDumpableTarget ? nonDumpable : dumpable;
        auto pid = static_cast<uint32_t>(target.pid());
        for (const auto& [name, action] : actions()) {
            // Root tracks the target (again, after an Untrack) before each cell.
            daemon_->fdStore();  // read its notifications, as systemd would
            std::string path = manager_->TrackProcess(pid);
            std::string result =
                asUser(column.uid, column.uid, column.groups,
                       [&](sdbus::IConnection& bus) { return action(bus, pid, path); });
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

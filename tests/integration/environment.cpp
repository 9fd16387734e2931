// SPDX-License-Identifier: LGPL-2.1-or-later
// The one private bus of a test program, as a GoogleTest environment.
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <stdexcept>
#include <string>

#include "harness.hpp"

namespace nsfd::test {

namespace {

// One bus for the whole test program, stopped when it ends.
class BusEnvironment : public ::testing::Environment {
  public:
    const std::string& address() {
        if (!bus_) {
            bus_ = std::make_unique<TestBus>(testBusKind());
            // sd-bus's system bus connections (ours, busctl's) go here.
            ::setenv("DBUS_SYSTEM_BUS_ADDRESS", bus_->address().c_str(), 1);
            // Client::system() and nsfdctl try this socket before the bus: none
            // here, unless a test serves one (never the machine's own nsfdd).
            ::setenv("NSFD_VARLINK_SOCKET", kNoVarlinkSocket, 1);
        }
        return bus_->address();
    }
    // sd-bus and sdbus-c++ keep a few fds for the life of the process once
    // first used; open them before any test counts fds.
    void SetUp() override {
        Daemon daemon(address());
        auto connection = sdbus::createSystemBusConnection();
        auto proxy = sdbus::createProxy(*connection, "org.nsfd1", "/org/nsfd1");
        proxy->uponSignal("ProcessExited").onInterface("org.nsfd1.Manager").call([] {});
        proxy->finishRegistration();
        proxy->getProperty("Version").onInterface("org.nsfd1.Manager").get<std::string>();
    }
    void TearDown() override { bus_.reset(); }

  private:
    std::unique_ptr<TestBus> bus_;
};

// gtest's way to register an environment; a throw here ends the test binary at
// start, which is what it should do.
// NOLINTNEXTLINE(cert-err58-cpp)
BusEnvironment* const kBusEnvironment = static_cast<BusEnvironment*>(
    ::testing::AddGlobalTestEnvironment(new BusEnvironment));  // gtest owns it

}  // namespace

BusKind testBusKind() {
    const char* name = std::getenv("NSFD_TEST_BUS");
    if (name == nullptr || std::string(name) == "dbus-daemon") {
        return BusKind::DbusDaemon;
    }
    if (std::string(name) == "dbus-broker") {
        return BusKind::DbusBroker;
    }
    throw std::runtime_error("NSFD_TEST_BUS: dbus-daemon or dbus-broker, not " + std::string(name));
}

const std::string& busAddress() {
    return kBusEnvironment->address();
}

std::unique_ptr<sdbus::IConnection> connectToBus() {
    (void)busAddress();
    return sdbus::createSystemBusConnection();
}

std::string asUser(uid_t uid, gid_t gid, const std::vector<gid_t>& groups,
                   const std::function<std::string(sdbus::IConnection&)>& fn) {
    (void)busAddress();  // start the bus (and set its address) before the fork
    return forkAndRead(
               [&](int out) {
                   std::string result;
                   if (::setgroups(groups.size(), groups.data()) < 0 ||
                       ::setresgid(gid, gid, gid) < 0 || ::setresuid(uid, uid, uid) < 0) {
                       result = "error:setuid";
                   } else {
                       try {
                           auto connection = connectToBus();
                           result = fn(*connection);
                       } catch (const sdbus::Error& e) {
                           result = "error:" + e.getName() + ": " + e.getMessage();
                       } catch (const std::exception& e) {
                           result = std::string("error:exception: ") + e.what();
                       }
                   }
                   (void)!::write(out, result.data(), result.size());
                   ::_exit(0);
               },
               "a call as uid " + std::to_string(uid))
        .second;
}

namespace {

bool writeString(const std::string& path, const std::string& text) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        return false;
    }
    bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    ::close(fd);
    return ok;
}

}  // namespace

bool enterSandbox(uid_t uid, gid_t gid) {
    // Dumpable again after the switch from root, or /proc/self/*_map stay root's.
    if (::prctl(PR_SET_DUMPABLE, 1) < 0 || ::unshare(CLONE_NEWUSER | CLONE_NEWPID) < 0 ||
        !writeString("/proc/self/setgroups", "deny") ||
        !writeString("/proc/self/uid_map", "0 " + std::to_string(uid) + " 1") ||
        !writeString("/proc/self/gid_map", "0 " + std::to_string(gid) + " 1")) {
        return false;
    }
    pid_t init = ::fork();
    if (init < 0) {
        return false;
    }
    if (init == 0) {
        return true;
    }
    int status = 0;
    while (::waitpid(init, &status, 0) < 0 && errno == EINTR) {
    }
    ::_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

std::string asSandboxedUser(uid_t uid, gid_t gid, const std::vector<gid_t>& groups,
                            const std::function<std::string(sdbus::IConnection&)>& fn) {
    (void)busAddress();
    return forkAndRead(
               [&](int out) {
                   std::string result;
                   if (::setgroups(groups.size(), groups.data()) < 0 ||
                       ::setresgid(gid, gid, gid) < 0 || ::setresuid(uid, uid, uid) < 0 ||
                       !enterSandbox(uid, gid)) {
                       result = "error:sandbox";
                   } else {
                       try {
                           auto connection = connectToBus();
                           result = fn(*connection);
                       } catch (const sdbus::Error& e) {
                           result = "error:" + e.getName() + ": " + e.getMessage();
                       } catch (const std::exception& e) {
                           result = std::string("error:exception: ") + e.what();
                       }
                   }
                   (void)!::write(out, result.data(), result.size());
                   ::_exit(0);
               },
               "a call as uid " + std::to_string(uid) + " in a sandbox")
        .second;
}

}  // namespace nsfd::test

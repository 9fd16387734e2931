// SPDX-License-Identifier: LGPL-2.1-or-later
#include "polkit_harness.hpp"

#include <fcntl.h>
#include <linux/close_range.h>
#include <sdbus-c++/sdbus-c++.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <vector>

#include "child.hpp"
#include "harness.hpp"

namespace nsfd::test {

namespace {

constexpr const char* kPolkitd = "/usr/lib/polkit-1/polkitd";
constexpr const char* kPolkitName = "org.freedesktop.PolicyKit1";

// polkitd drops to user polkitd before it reads anything: all must be readable by others.
void writeReadable(const std::string& path, const std::string& text) {
    std::ofstream(path) << text;
    ::chmod(path.c_str(), 0644);
}

void makeReadableDir(const std::string& path) {
    if (::mkdir(path.c_str(), 0755) < 0 && errno != EEXIST) {
        throw std::system_error(errno, std::generic_category(), "mkdir " + path);
    }
    ::chmod(path.c_str(), 0755);  // whatever the umask
}

bool hasOwner(sdbus::IConnection& connection, const std::string& name) {
    auto proxy = sdbus::createProxy(connection, "org.freedesktop.DBus", "/org/freedesktop/DBus");
    bool owned = false;
    proxy->callMethod("NameHasOwner")
        .onInterface("org.freedesktop.DBus")
        .withArguments(name)
        .storeResultsTo(owned);
    return owned;
}

// What the child needs, made before the fork: the child of a threaded
// process makes only system calls.
struct ExecPlan {
    std::string rules, empty, actions, log;
    std::vector<char*> envp;
    bool verbose = false;
};

[[noreturn]] void execPolkitd(const ExecPlan& plan) {
    if (::unshare(CLONE_NEWNS) < 0 ||
        ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0 ||
        ::mount(plan.rules.c_str(), "/etc/polkit-1/rules.d", nullptr, MS_BIND, nullptr) < 0 ||
        ::mount(plan.empty.c_str(), "/usr/share/polkit-1/rules.d", nullptr, MS_BIND, nullptr) < 0 ||
        ::mount(plan.actions.c_str(), "/usr/share/polkit-1/actions", nullptr, MS_BIND, nullptr) <
            0) {
        ::_exit(126);
    }
    ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
    int devNull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    int out = ::open(plan.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    ::dup2(devNull, 0);
    ::dup2(out, 1);
    ::dup2(out, 2);
    char* argv[] = {const_cast<char*>(kPolkitd),
                    plan.verbose ? nullptr : const_cast<char*>("--no-debug"), nullptr};
    ::execve(kPolkitd, argv, plan.envp.data());
    ::_exit(127);
}

}  // namespace

bool TestPolkit::installed() {
    return ::access(kPolkitd, X_OK) == 0 && ::access("/etc/polkit-1/rules.d", F_OK) == 0 &&
           ::access("/usr/share/polkit-1/actions", F_OK) == 0;
}

TestPolkit::TestPolkit(const std::string& busAddress, const std::string& rules, bool verbose) {
    char pattern[] = "/tmp/nsfd-polkit.XXXXXX";
    if (::mkdtemp(pattern) == nullptr) {
        throw std::system_error(errno, std::generic_category(), "mkdtemp");
    }
    dir_ = pattern;
    makeReadableDir(dir_);
    for (const char* sub : {"/rules.d", "/empty", "/actions"}) {
        makeReadableDir(dir_ + sub);
    }
    if (!rules.empty()) {
        writeReadable(dir_ + "/rules.d/50-test.rules", rules);
    }
    writeReadable(dir_ + "/actions/org.nsfd1.policy",
                  readFile(NSFD_TEST_SOURCE_DIR "/systemd/org.nsfd1.policy"));

    // A small environment of its own: the bus, and nothing of the test runner's.
    std::vector<std::string> environment = {"DBUS_SYSTEM_BUS_ADDRESS=" + busAddress,
                                            "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"};
    ExecPlan plan{
        dir_ + "/rules.d", dir_ + "/empty", dir_ + "/actions", dir_ + "/log", {}, verbose};
    for (std::string& variable : environment) {
        plan.envp.push_back(variable.data());
    }
    plan.envp.push_back(nullptr);
    pid_ = forkProcess();
    if (pid_ < 0) {
        throw std::system_error(errno, std::generic_category(), "fork");
    }
    if (pid_ == 0) {
        execPolkitd(plan);
    }

    auto connection = sdbus::createSessionBusConnectionWithAddress(busAddress);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!hasOwner(*connection, kPolkitName)) {
        int status = 0;
        if (::waitpid(pid_, &status, WNOHANG) == pid_) {
            pid_ = -1;
            throw std::runtime_error("polkitd exited (status " + std::to_string(status) +
                                     "): " + log());
        }
        if (std::chrono::steady_clock::now() > deadline) {
            throw std::runtime_error("polkitd did not take " + std::string(kPolkitName) +
                                     " within 10 s: " + log());
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
}

TestPolkit::~TestPolkit() {
    if (pid_ > 0) {
        ::kill(pid_, SIGKILL);  // a paused polkitd would hold a SIGTERM until resumed
        while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
        }
    }
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
}

void TestPolkit::pause() {
    ::kill(pid_, SIGSTOP);
    // Stopped once /proc says so: its next message is then surely unanswered.
    for (int i = 0; i < 1000; ++i) {
        std::ifstream stat("/proc/" + std::to_string(pid_) + "/stat");
        std::string pid, comm, state;
        if (stat >> pid >> comm >> state && state == "T") {
            return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}

void TestPolkit::resume() {
    ::kill(pid_, SIGCONT);
}

std::string TestPolkit::log() const {
    return readFile(dir_ + "/log");
}

}  // namespace nsfd::test

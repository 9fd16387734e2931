// SPDX-License-Identifier: LGPL-2.1-or-later
#include "fake_container.hpp"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <fstream>
#include <random>
#include <sstream>
#include <system_error>
#include <thread>

#include "nsfd/pidfd.hpp"

namespace nsfd::test {

namespace {

std::vector<pid_t> pidsIn(const std::string& dir) {
    std::vector<pid_t> pids;
    std::ifstream procs(dir + "/cgroup.procs");
    for (pid_t pid = 0; procs >> pid;) {
        pids.push_back(pid);
    }
    return pids;
}

}  // namespace

std::string cgroup2Root() {
    std::ifstream in("/proc/self/mountinfo");
    for (std::string line; std::getline(in, line);) {
        std::istringstream fields(line);
        std::string id, parent, device, root, mountPoint, options, field, type;
        fields >> id >> parent >> device >> root >> mountPoint >> options;
        while (fields >> field && field != "-") {
        }
        fields >> type;
        if (type == "cgroup2" && root == "/") {
            return mountPoint;
        }
    }
    return "";
}

std::string makeContainerId(std::string_view prefix) {
    static std::mt19937_64 random(std::random_device{}());
    std::string id(prefix);
    while (id.size() < 64) {
        id += "0123456789abcdef"[random() % 16];
    }
    return id;
}

FakeContainer::FakeContainer(std::string path, const std::string& hostname)
    : path_(std::move(path)) {
    std::string root = cgroup2Root();
    if (root.empty()) {
        throw std::system_error(ENOENT, std::generic_category(), "no cgroup2 hierarchy");
    }
    std::string dir = root;
    std::istringstream parts(path_);
    for (std::string part; std::getline(parts, part, '/');) {
        if (part.empty()) {
            continue;
        }
        dir += "/" + part;
        if (::mkdir(dir.c_str(), 0755) == 0) {
            made_.push_back(dir);
        } else if (errno != EEXIST) {
            int err = errno;
            cleanUp();
            throw std::system_error(err, std::generic_category(), "mkdir " + dir);
        }
    }
    std::string procs = dir + "/cgroup.procs";
    Child::Options options;
    options.cloneFlags = CLONE_NEWNET | CLONE_NEWUTS;
    try {
        main_.emplace(Child::spawn(
            [&procs, &hostname] {
                // Into the container's cgroup first: the child below is born in it.
                int fd = ::open(procs.c_str(), O_WRONLY | O_CLOEXEC);
                if (fd < 0 || ::write(fd, "0", 1) != 1) {
                    return errno;
                }
                ::close(fd);
                if (::sethostname(hostname.data(), hostname.size()) < 0) {
                    return errno;
                }
                // Its children are reaped by the kernel when they exit.
                struct sigaction ignore {};
                ignore.sa_handler = SIG_IGN;
                ::sigaction(SIGCHLD, &ignore, nullptr);
                pid_t parent = ::getpid();
                pid_t child = ::fork();
                if (child < 0) {
                    return errno;
                }
                if (child == 0) {
                    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
                    if (::getppid() != parent) {
                        ::_exit(0);
                    }
                    while (true) {
                        ::pause();
                    }
                }
                return 0;
            },
            options));
    } catch (...) {
        cleanUp();
        throw;
    }
    for (pid_t pid : pidsIn(dir)) {
        if (pid != main_->pid()) {
            child_ = pid;
        }
    }
}

FakeContainer::~FakeContainer() {
    cleanUp();
}

void FakeContainer::cleanUp() noexcept {
    if (child_ > 0) {
        try {
            PidFd child = PidFd::open(child_);
            child.sendSignal(SIGKILL);
            // Its parent ignores SIGCHLD: it is reaped as it dies.
            auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
            while (!child.hasExited() && std::chrono::steady_clock::now() < deadline) {
                std::this_thread::sleep_for(std::chrono::milliseconds(2));
            }
        } catch (const std::system_error&) {
            // gone already
        }
        child_ = 0;
    }
    if (main_) {
        try {
            main_->release(0);
            main_->reap();
        } catch (const std::exception&) {
            // reaped by Child's destructor
        }
        main_.reset();
    }
    for (auto it = made_.rbegin(); it != made_.rend(); ++it) {
        // A cgroup is empty a moment after its last process was reaped.
        for (int i = 0; i < 500 && ::rmdir(it->c_str()) < 0 && errno == EBUSY; ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
    }
    made_.clear();
}

}  // namespace nsfd::test

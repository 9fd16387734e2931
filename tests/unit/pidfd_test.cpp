// SPDX-License-Identifier: LGPL-2.1-or-later
#include "nsfd/pidfd.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/securebits.h>
#include <sched.h>
#include <sys/fsuid.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "child.hpp"
#include "nsfd/features.hpp"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

namespace nsfd::test {
namespace {

constexpr uid_t kOtherUid = 4711;

class PidFdTest : public LeakCheckedTest {
  protected:
    void requireNamespaceIoctls() {
        if (!kernelFeatures().namespaceIoctls) {
            GTEST_SKIP() << "kernel lacks PIDFD_GET_*_NAMESPACE (6.11+)";
        }
    }
    void requireInfo() {
        if (!kernelFeatures().info) {
            GTEST_SKIP() << "kernel lacks PIDFD_GET_INFO (6.13+)";
        }
    }
    void requireExitInfo() {
        if (!kernelFeatures().exitInfo) {
            GTEST_SKIP() << "kernel lacks PIDFD_INFO_EXIT (6.15+)";
        }
    }
};

std::uint64_t nsIdOfPath(const std::string& path) {
    NsFd ns = NsFd::adopt(UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC)));
    return ns.id();
}

std::string procNsPath(pid_t pid, NsType type) {
    return "/proc/" + std::to_string(pid) + "/ns/" + std::string(toString(type));
}

// A child in a fresh namespace of every kind. It also unshares pid and time
// again, so that pid_for_children and time_for_children differ from pid and time,
// and starts an init there: /proc/PID/ns/pid_for_children is ENOENT until the
// namespace has one (the pidfd ioctl is not so picky).
Child spawnInFreshNamespaces() {
    Child::Options options;
    options.cloneFlags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC |
                         CLONE_NEWPID | CLONE_NEWCGROUP | CLONE_NEWTIME;
    return Child::spawn(
        [] {
            if (::unshare(CLONE_NEWPID | CLONE_NEWTIME) < 0) {
                return errno;
            }
            pid_t init = ::fork();
            if (init == 0) {
                ::pause();  // killed with the child's pid namespace
                ::_exit(0);
            }
            return init < 0 ? errno : 0;
        },
        options);
}

TEST_F(PidFdTest, EachGetterMatchesProcForAProcessInFreshNamespaces) {
    requireNamespaceIoctls();
    Child child = spawnInFreshNamespaces();
    PidFd pidfd = PidFd::open(child.pid());

    using Getter = NsFd (PidFd::*)() const;
    const std::pair<NsType, Getter> getters[] = {
        {NsType::Cgroup, &PidFd::cgroupNamespace},
        {NsType::Ipc, &PidFd::ipcNamespace},
        {NsType::Mnt, &PidFd::mntNamespace},
        {NsType::Net, &PidFd::netNamespace},
        {NsType::Pid, &PidFd::pidNamespace},
        {NsType::PidForChildren, &PidFd::pidNamespaceForChildren},
        {NsType::Time, &PidFd::timeNamespace},
        {NsType::TimeForChildren, &PidFd::timeNamespaceForChildren},
        {NsType::User, &PidFd::userNamespace},
        {NsType::Uts, &PidFd::utsNamespace},
    };
    std::set<std::uint64_t> ids;
    for (const auto& [type, getter] : getters) {
        SCOPED_TRACE(std::string(toString(type)));
        NsFd ns = (pidfd.*getter)();
        EXPECT_EQ(ns.type(), type);
        EXPECT_EQ(::fcntl(ns.get(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);

        struct stat got {
        }, expected{};
        ASSERT_EQ(::fstat(ns.get(), &got), 0);
        ASSERT_EQ(::stat(procNsPath(child.pid(), type).c_str(), &expected), 0);
        EXPECT_EQ(got.st_dev, expected.st_dev);
        EXPECT_EQ(got.st_ino, expected.st_ino);
        EXPECT_EQ(ns.inode(), expected.st_ino);
        if (kernelFeatures().namespaceId) {
            EXPECT_EQ(ns.id(), nsIdOfPath(procNsPath(child.pid(), type)));
            EXPECT_NE(ns.id(), NsFd::current(type).id()) << "expected a fresh namespace";
            EXPECT_EQ(pidfd.namespaceFd(type).id(), ns.id());
            ids.insert(ns.id());
        }
    }
    if (kernelFeatures().namespaceId) {
        EXPECT_EQ(ids.size(), 10U) << "every namespace of the child is a distinct one";
    }
    child.release(0);
    EXPECT_EQ(child.reap(), 0);
}

TEST_F(PidFdTest, SameNamespacesAsOursForAPlainChild) {
    requireNamespaceIoctls();
    Child child = Child::spawn();
    PidFd pidfd = PidFd::open(child.pid());
    for (NsType type : allNsTypes()) {
        EXPECT_EQ(pidfd.namespaceFd(type).inode(), NsFd::current(type).inode()) << toString(type);
    }
    child.release(0);
    child.reap();
}

TEST_F(PidFdTest, IdentityIsThePidfsInode) {
    if (!kernelFeatures().pidfs) {
        GTEST_SKIP() << "kernel lacks pidfs (6.9+)";
    }
    Child a = Child::spawn();
    Child b = Child::spawn();
    PidFd first = PidFd::open(a.pid());
    PidFd again = PidFd::open(a.pid());
    PidFd other = PidFd::open(b.pid());
    struct stat st {};
    ASSERT_EQ(::fstat(first.get(), &st), 0);
    EXPECT_EQ(first.id(), st.st_ino);
    EXPECT_EQ(first.id(), again.id());
    EXPECT_NE(first.id(), other.id());
    EXPECT_EQ(first.pid(), a.pid());
    a.release(0);
    b.release(0);
    a.reap();
    b.reap();
}

TEST_F(PidFdTest, SelfIsThisProcess) {
    PidFd self = PidFd::self();
    EXPECT_EQ(self.pid(), ::getpid());
    EXPECT_EQ(::fcntl(self.get(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    EXPECT_FALSE(self.hasExited());
    if (kernelFeatures().info) {
        EXPECT_EQ(self.info().pid(), ::getpid());
    }
}

TEST_F(PidFdTest, OpenRejectsBadPids) {
    std::string message;
    EXPECT_EQ(errnoOf([] { PidFd::open(0); }, &message), EINVAL);
    EXPECT_EQ(message, "Failed to open pidfd for pid 0: Invalid argument");
    EXPECT_EQ(errnoOf([] { PidFd::open(-5); }), EINVAL);

    Child gone = Child::spawn();
    pid_t pid = gone.pid();
    gone.release(0);
    gone.reap();
    EXPECT_EQ(errnoOf([&] { PidFd::open(pid); }, &message), ESRCH);
    EXPECT_EQ(message, "Failed to open pidfd for pid " + std::to_string(pid) + ": No such process");
}

TEST_F(PidFdTest, InfoAndDistinctCredentials) {
    requireInfo();
    // Eight different ids. NO_SETUID_FIXUP keeps CAP_SETUID past setresuid so
    // that the fsuid can still differ from the others.
    Child child = Child::spawn([] {
        if (::setresgid(1001, 1002, 1003) < 0) {
            return errno;
        }
        ::setfsgid(1004);
        if (::prctl(PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP) < 0 ||
            ::setresuid(2001, 2002, 2003) < 0) {
            return errno;
        }
        ::setfsuid(2004);
        return 0;
    });
    PidFd pidfd = PidFd::open(child.pid());
    Info info = pidfd.info();
    EXPECT_EQ(info.pid(), child.pid());
    EXPECT_EQ(info.threadGroupId(), child.pid());
    EXPECT_EQ(info.parentPid(), ::getpid());
    EXPECT_EQ(info.exitStatus(), std::nullopt) << "a running process has no exit status";

    Credentials expected{2001, 2002, 2003, 2004, 1001, 1002, 1003, 1004};
    EXPECT_EQ(info.credentials(), expected);
    EXPECT_EQ(pidfd.credentials(), expected);

    // The same ids as /proc/PID/status shows ("Uid:\truid\teuid\tsuid\tfsuid").
    std::ifstream status("/proc/" + std::to_string(child.pid()) + "/status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.rfind("Uid:", 0) == 0) {
            EXPECT_EQ(line, "Uid:\t2001\t2002\t2003\t2004");
        } else if (line.rfind("Gid:", 0) == 0) {
            EXPECT_EQ(line, "Gid:\t1001\t1002\t1003\t1004");
        }
    }

    // cgroup id: the inode of the process's cgroup2 directory.
    std::ifstream cgroup("/proc/" + std::to_string(child.pid()) + "/cgroup");
    std::string entry;
    while (std::getline(cgroup, entry) && entry.rfind("0::", 0) != 0) {
    }
    struct stat st {};
    if (entry.rfind("0::", 0) == 0 &&
        ::stat(("/sys/fs/cgroup" + entry.substr(3)).c_str(), &st) == 0) {
        EXPECT_EQ(info.cgroupId(), st.st_ino);
    } else {
        ADD_FAILURE() << "no cgroup2 hierarchy at /sys/fs/cgroup to check the cgroup id against";
    }

    // Exit is asked for but not reported: the accessor stays empty.
    Info onlyPid = pidfd.info(InfoFlags::Pid | InfoFlags::Exit);
    EXPECT_EQ(onlyPid.pid(), child.pid());
    EXPECT_FALSE(hasFlag(onlyPid.mask(), InfoFlags::Exit));
    child.release(0);
    child.reap();
}

TEST_F(PidFdTest, ExitStatusAfterReap) {
    requireExitInfo();
    Child child = Child::spawn();
    PidFd pidfd = PidFd::open(child.pid());
    EXPECT_FALSE(pidfd.hasExited());
    child.release(42);
    child.awaitExit();

    // A zombie: exited, but its status is the parent's to collect first.
    EXPECT_TRUE(pidfd.hasExited());
    EXPECT_EQ(pidfd.info().exitStatus(), std::nullopt);
    std::string message;
    EXPECT_EQ(errnoOf([&] { (void)pidfd.netNamespace(); }, &message), ESRCH);
    EXPECT_EQ(message, "Failed to get net namespace of pid " + std::to_string(child.pid()) +
                           ": No such process");

    int status = child.reap();
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 42);
    Info info = pidfd.info();
    EXPECT_EQ(info.exitStatus(), 0x2a00);
    EXPECT_EQ(info.exitStatus(), status);
    EXPECT_TRUE(pidfd.hasExited());
    EXPECT_EQ(errnoOf([&] { (void)pidfd.utsNamespace(); }), ESRCH);
    EXPECT_EQ(errnoOf([&] { (void)pidfd.credentials(); }), ESRCH);
}

TEST_F(PidFdTest, ExitStatusOfSigkill) {
    requireExitInfo();
    Child child = Child::spawn();
    PidFd pidfd = PidFd::open(child.pid());
    pidfd.sendSignal(SIGKILL);
    int status = child.reap();
    ASSERT_TRUE(WIFSIGNALED(status));
    EXPECT_EQ(pidfd.info().exitStatus(), SIGKILL);
    EXPECT_EQ(pidfd.info(InfoFlags::Exit).exitStatus(), status);
}

TEST_F(PidFdTest, CoredumpMaskWhereSupported) {
    requireExitInfo();
    if (!kernelFeatures().coredumpInfo) {
        GTEST_SKIP() << "kernel lacks PIDFD_INFO_COREDUMP (6.16+)";
    }
    Child child = Child::spawn();
    PidFd pidfd = PidFd::open(child.pid());
    child.release(0);
    child.reap();
    Info info = pidfd.info(InfoFlags::Exit | InfoFlags::Coredump);
    ASSERT_TRUE(info.coredumpMask().has_value());
    EXPECT_EQ(*info.coredumpMask() & 0x2U, 0U) << "a clean exit did not dump core";
}

TEST_F(PidFdTest, NonDumpableSameUidIsDeniedToAnUnprivilegedCaller) {
    requireNamespaceIoctls();
    auto becomeOtherUser = [](bool dumpable) {
        return [dumpable] {
            if (::setresgid(kOtherUid, kOtherUid, kOtherUid) < 0 ||
                ::setresuid(kOtherUid, kOtherUid, kOtherUid) < 0 ||
                ::prctl(PR_SET_DUMPABLE, dumpable ? 1 : 0) < 0) {
                return errno;
            }
            return 0;
        };
    };
    Child dumpable = Child::spawn(becomeOtherUser(true));
    Child secret = Child::spawn(becomeOtherUser(false));
    Child rootOwned = Child::spawn();

    runAsUser(kOtherUid, kOtherUid, [&] {
        PidFd own = PidFd::open(dumpable.pid());
        EXPECT_EQ(own.netNamespace().inode(), NsFd::current(NsType::Net).inode());

        PidFd nonDumpable = PidFd::open(secret.pid());
        EXPECT_EQ(errnoOf([&] { (void)nonDumpable.netNamespace(); }), EACCES);

        PidFd other = PidFd::open(rootOwned.pid());
        std::string message;
        EXPECT_EQ(errnoOf([&] { (void)other.mntNamespace(); }, &message), EACCES);
        EXPECT_EQ(message, "Failed to get mnt namespace of pid " + std::to_string(rootOwned.pid()) +
                               ": Permission denied");
        // Info has no ptrace check.
        if (kernelFeatures().info) {
            EXPECT_EQ(other.info().pid(), rootOwned.pid());
        }
        EXPECT_EQ(errnoOf([&] { other.sendSignal(SIGTERM); }), EPERM);
        EXPECT_EQ(errnoOf([&] { (void)other.getFd(0); }), EPERM) << "getfd needs ATTACH rights";
    });
    for (Child* child : {&dumpable, &secret, &rootOwned}) {
        child->release(0);
        EXPECT_EQ(child->reap(), 0);
    }
}

TEST_F(PidFdTest, PidReuseGivesANewIdentity) {
    requireNamespaceIoctls();
    Child first = Child::spawn();
    pid_t pid = first.pid();
    PidFd old = PidFd::open(pid);
    first.release(0);
    first.reap();

    // Ask clone3 for the same pid; another process may take it first, so retry.
    std::optional<Child> second;
    for (int attempt = 0; attempt < 50 && !second; ++attempt) {
        try {
            second.emplace(Child::spawn({}, Child::Options{.setTid = pid}));
        } catch (const std::system_error& e) {
            ASSERT_EQ(e.code().value(), EEXIST) << e.what();
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    }
    ASSERT_TRUE(second) << "pid " << pid << " stayed taken";
    ASSERT_EQ(second->pid(), pid);

    PidFd reused = PidFd::open(pid);
    EXPECT_EQ(errnoOf([&] { (void)old.netNamespace(); }), ESRCH)
        << "the old handle must not reach the new process";
    EXPECT_EQ(errnoOf([&] { old.sendSignal(0); }), ESRCH);
    if (kernelFeatures().pidfs) {
        EXPECT_NE(reused.id(), old.id());
    }
    EXPECT_NO_THROW((void)reused.netNamespace());
    second->release(0);
    second->reap();
}

TEST_F(PidFdTest, ThreadsNeedTheThreadFlag) {
    IdleThread thread;
    pid_t tid = thread.tid();
    EXPECT_EQ(errnoOf([&] { PidFd::open(tid); }), ENOENT);
    if (kernelFeatures().threadPidFd) {
        PidFd threadFd = PidFd::open(tid, PidFdFlags::Thread);
        EXPECT_EQ(threadFd.pid(), tid);
        EXPECT_FALSE(threadFd.hasExited());
    }
}

TEST_F(PidFdTest, NonBlockFlag) {
    PidFd pidfd = PidFd::open(::getpid(), PidFdFlags::NonBlock);
    EXPECT_EQ(::fcntl(pidfd.get(), F_GETFL) & O_NONBLOCK, O_NONBLOCK);
}

TEST_F(PidFdTest, AdoptAcceptsOnlyPidFds) {
    PidFd original = PidFd::open(::getpid());
    std::uint64_t id = kernelFeatures().pidfs ? original.id() : 0;
    PidFd adopted = PidFd::adopt(UniqueFd(original.release()));
    EXPECT_EQ(adopted.pid(), ::getpid());
    if (kernelFeatures().pidfs) {
        EXPECT_EQ(adopted.id(), id);
    }

    int pipeFds[2];
    ASSERT_EQ(::pipe2(pipeFds, O_CLOEXEC), 0);
    UniqueFd keepWriteEnd(pipeFds[1]);
    std::string message;
    EXPECT_EQ(errnoOf([&] { PidFd::adopt(UniqueFd(pipeFds[0])); }, &message), EINVAL);
    EXPECT_NE(message.find("is not a pidfd"), std::string::npos) << message;
    EXPECT_EQ(errnoOf([] { PidFd::adopt(UniqueFd(::memfd_create("x", MFD_CLOEXEC))); }), EINVAL);
    EXPECT_EQ(errnoOf([] { PidFd::adopt(UniqueFd(NsFd::current(NsType::Net).release())); }),
              EINVAL);
    EXPECT_EQ(errnoOf([] { PidFd::adopt(UniqueFd()); }), EINVAL);
}

TEST_F(PidFdTest, AdoptOfAReapedProcess) {
    Child child = Child::spawn();
    UniqueFd raw(PidFd::open(child.pid()).release());
    child.release(3);
    child.reap();
    PidFd adopted = PidFd::adopt(std::move(raw));
    EXPECT_EQ(adopted.pid(), -1);
    EXPECT_TRUE(adopted.hasExited());
    if (kernelFeatures().exitInfo) {
        EXPECT_EQ(adopted.info().exitStatus(), 0x300);
    }
}

TEST_F(PidFdTest, SendSignal) {
    Child child = Child::spawn();
    PidFd pidfd = PidFd::open(child.pid());
    pidfd.sendSignal(0);
    EXPECT_EQ(errnoOf([&] { pidfd.sendSignal(-1); }), EINVAL);
    EXPECT_EQ(errnoOf([&] { pidfd.sendSignal(1000); }), EINVAL);
    pidfd.sendSignal(SIGTERM);
    int status = child.reap();
    ASSERT_TRUE(WIFSIGNALED(status));
    EXPECT_EQ(WTERMSIG(status), SIGTERM);
    EXPECT_EQ(errnoOf([&] { pidfd.sendSignal(SIGTERM); }), ESRCH);
}

TEST_F(PidFdTest, GetFdDuplicatesTheTargetsFd) {
    Child child = Child::spawn([] {
        int fd = ::memfd_create("nsfd-test", 0);
        return fd >= 0 && ::dup2(fd, 77) == 77 ? 0 : errno;
    });
    PidFd pidfd = PidFd::open(child.pid());
    UniqueFd fd = pidfd.getFd(77);
    struct stat got {
    }, expected{};
    ASSERT_EQ(::fstat(fd.get(), &got), 0);
    ASSERT_EQ(::stat(("/proc/" + std::to_string(child.pid()) + "/fd/77").c_str(), &expected), 0);
    EXPECT_EQ(got.st_ino, expected.st_ino);
    EXPECT_EQ(::fcntl(fd.get(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    EXPECT_EQ(errnoOf([&] { (void)pidfd.getFd(999); }), EBADF);
    child.release(0);
    child.reap();
}

TEST_F(PidFdTest, KernelFeaturesAgreeWithTheCalls) {
    const KernelFeatures& features = kernelFeatures();
    PidFd self = PidFd::self();
    auto notSupported = static_cast<int>(std::errc::operation_not_supported);
    EXPECT_EQ(errnoOf([&] { (void)self.netNamespace(); }),
              features.namespaceIoctls ? 0 : notSupported);
    EXPECT_EQ(errnoOf([&] { (void)self.info(); }), features.info ? 0 : notSupported);
    EXPECT_EQ(errnoOf([] { (void)NsFd::current(NsType::Uts).id(); }),
              features.namespaceId ? 0 : notSupported);
    EXPECT_EQ(errnoOf([&] { (void)self.id(); }), features.pidfs ? 0 : notSupported);
    std::vector<std::string_view> names = features.names();
    EXPECT_EQ(std::find(names.begin(), names.end(), "namespace-ioctls") != names.end(),
              features.namespaceIoctls);
    EXPECT_EQ(std::find(names.begin(), names.end(), "exit-info") != names.end(), features.exitInfo);
}

}  // namespace
}  // namespace nsfd::test

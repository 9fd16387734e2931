// SPDX-License-Identifier: LGPL-2.1-or-later
// The fixture of the tests that run a real nsfdd on the private bus.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <iostream>
#include <memory>
#include <string>
#include <system_error>

#include "child.hpp"
#include "harness.hpp"
#include "nsfd/features.hpp"
#include "nsfd/pidfd.hpp"
#include "proxies.hpp"

namespace nsfd::test {

namespace err = nsfd::dbus::error;  // NOLINT: short names in tests
inline constexpr const char* kUnknownObject = err::kUnknownObject;

// Real users (dbus-daemon refuses uids without a passwd entry); scripts/test creates them.
inline uid_t uidOf(const char* name) noexcept {
    struct passwd* pw = ::getpwnam(name);
    return pw == nullptr ? 0 : pw->pw_uid;
}
inline const uid_t kUser = uidOf("nsfd-test-a");
inline const uid_t kOtherUser = uidOf("nsfd-test-b");
inline constexpr gid_t kGrantedGroup = 100;  // "users" on Debian, named in the grant below

inline const char* const kGrantConfig = R"(
[limits]
tracked-per-user = 3
retention-seconds = 1

[[grant]]
group = "users"
namespaces = ["net", "uts"]
info = true
)";

// kGrantConfig's grant with pidfds, marked for callers in a sandbox of their own.
inline const char* const kSandboxGrantConfig = R"(
[[grant]]
group = "users"
namespaces = ["net", "uts"]
info = true
pidfd = true
sandboxed = true
)";

inline struct stat statOf(int fd) {
    struct stat st {};
    EXPECT_EQ(::fstat(fd, &st), 0);
    return st;
}

inline struct stat statOf(const std::string& path) {
    struct stat st {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
    return st;
}

inline std::string nsPath(pid_t pid, std::string_view type) {
    return "/proc/" + std::to_string(pid) + "/ns/" + std::string(type);
}

// A fd received over the bus is the namespace at `path`: same inode, same NS_GET_ID.
inline void expectSameNamespace(const sdbus::UnixFd& fd, const std::string& path) {
    ASSERT_TRUE(fd.isValid());
    struct stat got = statOf(fd.get()), expected = statOf(path);
    EXPECT_EQ(got.st_dev, expected.st_dev) << path;
    EXPECT_EQ(got.st_ino, expected.st_ino) << path;
    if (kernelFeatures().namespaceId) {
        NsFd received = NsFd::adopt(duplicateFd(fd.get()));
        NsFd fromProc = NsFd::adopt(UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC)));
        EXPECT_EQ(received.id(), fromProc.id()) << path;
    }
}

// A child running as uid (its gid the same); with `pid`, it has that pid
// (clone3's set_tid: it must be free).
inline Child spawnAs(uid_t uid, bool dumpable = true, pid_t pid = 0) {
    return Child::spawn(
        [uid, dumpable] {
            if (::setresgid(uid, uid, uid) < 0 || ::setresuid(uid, uid, uid) < 0 ||
                ::prctl(PR_SET_DUMPABLE, dumpable ? 1 : 0) < 0) {
                return errno;
            }
            return 0;
        },
        Child::Options{0, pid});
}

// A directory the test users can reach, for nsfdd's Varlink socket; removed with it.
class SocketDir {
  public:
    SocketDir() {
        char dir[] = "/tmp/nsfd-varlink-XXXXXX";
        if (::mkdtemp(dir) == nullptr || ::chmod(dir, 0755) < 0) {
            throw std::system_error(errno, std::system_category(), "mkdtemp");
        }
        dir_ = dir;
    }
    SocketDir(const SocketDir&) = delete;
    SocketDir& operator=(const SocketDir&) = delete;
    ~SocketDir() {
        ::unlink(socket().c_str());
        ::rmdir(dir_.c_str());
    }
    const std::string& path() const { return dir_; }
    std::string socket() const { return dir_ + "/org.nsfd1.Manager"; }

  private:
    std::string dir_;
};

class DaemonTest : public LeakCheckedTest {
  protected:
    virtual std::string config() const { return ""; }
    // Where nsfdd binds its Varlink socket (--varlink); none if empty.
    virtual std::string varlinkPath() const { return ""; }

    void SetUp() override {
        LeakCheckedTest::SetUp();
        if (!kernelFeatures().namespaceIoctls || !kernelFeatures().pidfs ||
            !kernelFeatures().info) {
            GTEST_SKIP() << "nsfdd needs pidfs, PIDFD_GET_INFO and the pidfd namespace ioctls "
                            "(kernel 6.13+)";
        }
        Daemon::Options options{config(), {}, "debug", 0, varlinkPath()};
        daemon_ = std::make_unique<Daemon>(busAddress(), std::move(options));
        connection_ = connectToBus();
        manager_ = std::make_unique<ManagerProxy>(*connection_);
    }

    void TearDown() override {
        manager_.reset();
        connection_.reset();
        if (daemon_ && HasFailure()) {
            // A failed call (a D-Bus timeout, say) is explained on nsfdd's side.
            std::cerr << "---- nsfdd's log ----\n" << daemon_->log();
        }
        if (daemon_) {
            int status = daemon_->stop();
            EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
                << "nsfdd did not stop cleanly (status " << status << "):\n"
                << daemon_->log();
            daemon_.reset();
        }
        LeakCheckedTest::TearDown();
    }

    std::unique_ptr<ProcessProxy> process(const std::string& path) {
        return std::make_unique<ProcessProxy>(*connection_, path);
    }

    bool waitUntil(const std::function<bool()>& done) {
        return test::waitUntil(*connection_, done);
    }

    std::unique_ptr<Daemon> daemon_;
    std::unique_ptr<sdbus::IConnection> connection_;
    std::unique_ptr<ManagerProxy> manager_;
};

}  // namespace nsfd::test

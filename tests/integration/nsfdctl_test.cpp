// SPDX-License-Identifier: LGPL-2.1-or-later
// nsfdctl end to end, as a user runs it.
#include <sched.h>
#include <signal.h>

#include <nlohmann/json.hpp>

#include "fixture.hpp"

namespace nsfd::test {
namespace {

using nlohmann::json;

std::pair<int, std::string> nsfdctl(const std::vector<std::string>& args,
                                    std::optional<uid_t> user = std::nullopt) {
    std::vector<std::string> argv;
    if (user) {
        argv = {"setpriv", "--reuid=" + std::to_string(*user), "--regid=" + std::to_string(*user),
                "--clear-groups"};
    }
    argv.push_back(NSFD_TEST_NSFDCTL);
    argv.insert(argv.end(), args.begin(), args.end());
    auto [status, out] = run(argv);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

class NsfdctlTest : public DaemonTest {};

TEST_F(NsfdctlTest, ExecEntersNetAndUts) {
    Child::Options options;
    options.cloneFlags = CLONE_NEWNET | CLONE_NEWUTS;
    Child child =
        Child::spawn([] { return ::sethostname("nsfd-inside", 11) < 0 ? errno : 0; }, options);
    std::string pid = std::to_string(child.pid());
    auto [code, out] =
        nsfdctl({"exec", pid, "--net", "--uts", "--", "sh", "-c", "hostname; ip -o link"});
    EXPECT_EQ(code, 0);
    EXPECT_EQ(out.substr(0, out.find('\n')), "nsfd-inside");
    EXPECT_NE(out.find("1: lo:"), std::string::npos) << out;
    EXPECT_EQ(out.find("2: "), std::string::npos) << "a fresh net namespace has only lo:\n" << out;
    auto [exitCode, ignored] = nsfdctl({"exec", pid, "--all", "--", "sh", "-c", "exit 7"});
    EXPECT_EQ(exitCode, 7) << "nsfdctl exits with the command's status";
    EXPECT_EQ(nsfdctl({"exec", pid, "--net", "--", "/nonexistent/command"}).first, 127);
    child.release(0);
    child.reap();
}

// What an unprivileged user may enter: namespaces owned by a user namespace of
// its own (setns needs CAP_SYS_ADMIN over the namespace, as for nsenter).
Child spawnInOwnUserNamespace(uid_t uid) {
    return Child::spawn([uid] {
        // Changing uid clears "dumpable", which hands /proc/self to root.
        if (::setresgid(uid, uid, uid) < 0 || ::setresuid(uid, uid, uid) < 0 ||
            ::prctl(PR_SET_DUMPABLE, 1) < 0 ||
            ::unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWUTS) < 0) {
            return errno;
        }
        std::string map = "0 " + std::to_string(uid) + " 1";
        for (const char* file :
             {"/proc/self/uid_map", "/proc/self/setgroups", "/proc/self/gid_map"}) {
            int fd = ::open(file, O_WRONLY | O_CLOEXEC);
            std::string text = std::string(file) == "/proc/self/setgroups" ? "deny" : map;
            if (fd < 0 || ::write(fd, text.data(), text.size()) < 0) {
                return errno;
            }
            ::close(fd);
        }
        return ::sethostname("users-own", 9) < 0 ? errno : 0;
    });
}

TEST_F(NsfdctlTest, UnprivilegedExecIntoOwnProcessOnly) {
    if (kUser == 0) {
        GTEST_SKIP() << "users nsfd-test-a and nsfd-test-b are missing (scripts/test creates them)";
    }
    Child own = spawnInOwnUserNamespace(kUser);
    Child others = spawnInOwnUserNamespace(kOtherUser);
    auto [code, out] = nsfdctl({"exec", std::to_string(own.pid()), "--user", "--net", "--uts", "--",
                                "sh", "-c", "hostname; id -u"},
                               kUser);
    EXPECT_EQ(code, 0) << out;
    EXPECT_EQ(out, "users-own\n0\n");
    auto [denied, out2] =
        nsfdctl({"exec", std::to_string(others.pid()), "--user", "--net", "--", "true"}, kUser);
    EXPECT_EQ(denied, 4) << "exit code 4: access denied";
    own.release(0);
    own.reap();
    others.release(0);
    others.reap();
}

TEST_F(NsfdctlTest, JsonOutputParsesAndAgreesWithInfo) {
    Child child = Child::spawn();
    std::string pid = std::to_string(child.pid());
    PidFd pidfd = PidFd::open(child.pid());

    json status = json::parse(nsfdctl({"--json", "status"}).second);
    EXPECT_EQ(status["version"], NSFD_TEST_VERSION);
    EXPECT_EQ(status["tracked_processes"], 0);

    json tracked = json::parse(nsfdctl({"--json", "track", pid}).second);
    EXPECT_EQ(tracked["pid"], child.pid());
    EXPECT_EQ(tracked["id"], pidfd.id());

    json list = json::parse(nsfdctl({"--json", "list"}).second);
    ASSERT_EQ(list.size(), 1U);
    EXPECT_EQ(list[0]["id"], pidfd.id());
    EXPECT_EQ(list[0]["path"], tracked["path"]);

    json info = json::parse(nsfdctl({"--json", "info", pid}).second);
    Info expected = pidfd.info();
    EXPECT_EQ(info["pid"], child.pid());
    EXPECT_EQ(info["id"], pidfd.id());
    EXPECT_EQ(info["parent_pid"], ::getpid());
    EXPECT_EQ(info["cgroup_id"], *expected.cgroupId());
    EXPECT_EQ(info["uids"]["real"], expected.credentials()->ruid);
    EXPECT_EQ(info["state"], "running");
    EXPECT_TRUE(info["exit_status"].is_null());

    json ns = json::parse(nsfdctl({"--json", "ns", pid}).second);
    EXPECT_EQ(ns.size(), 10U);
    EXPECT_EQ(ns["net"]["inode"], statOf(nsPath(child.pid(), "net")).st_ino);
    EXPECT_EQ(ns["net"]["id"], NsFd::current(NsType::Net).id());

    auto [code, text] = nsfdctl({"info", pid});
    EXPECT_EQ(code, 0);
    EXPECT_NE(text.find("Pid:              " + pid), std::string::npos) << text;

    EXPECT_EQ(nsfdctl({"untrack", std::to_string(pidfd.id())}).first, 0);
    EXPECT_EQ(json::parse(nsfdctl({"--json", "list"}).second).size(), 0U);
    child.release(0);
    child.reap();
}

TEST_F(NsfdctlTest, SignalAndWatch) {
    Child child = Child::spawn();
    std::string pid = std::to_string(child.pid());
    EXPECT_EQ(nsfdctl({"track", pid}).first, 0);
    // watch, in the background, until SIGINT.
    int pipeFds[2];
    ASSERT_EQ(::pipe2(pipeFds, O_CLOEXEC), 0);
    UniqueFd readEnd(pipeFds[0]), writeEnd(pipeFds[1]);
    ASSERT_EQ(::pipe2(pipeFds, O_CLOEXEC), 0);
    UniqueFd errorRead(pipeFds[0]), errorWrite(pipeFds[1]);
    pid_t watcher = test::forkProcess();
    if (watcher == 0) {
        ::dup2(writeEnd.get(), 1);
        ::dup2(errorWrite.get(), 2);
        ::execl(NSFD_TEST_NSFDCTL, "nsfdctl", "watch", nullptr);
        ::_exit(127);
    }
    writeEnd.reset();
    errorWrite.reset();
    auto readLine = [](int fd) {
        std::string line;
        char c;
        while (::read(fd, &c, 1) == 1 && c != '\n') {
            line += c;
        }
        return line;
    };
    // It says so once it listens.
    EXPECT_EQ(readLine(errorRead.get()), "Watching exits of tracked processes (Ctrl-C to stop)");
    EXPECT_EQ(nsfdctl({"signal", pid, "SIGTERM"}).first, 0);
    int status = child.reap();
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
    std::string line = readLine(readEnd.get());
    EXPECT_EQ(line.rfind("pid " + pid + " (id ", 0), 0U) << line;
    EXPECT_NE(line.find("killed by SIGTERM"), std::string::npos) << line;
    ::kill(watcher, SIGINT);
    int watchStatus = reapWithin(watcher, "nsfdctl watch to exit after SIGINT");
    EXPECT_TRUE(WIFEXITED(watchStatus) && WEXITSTATUS(watchStatus) == 0);
}

TEST_F(NsfdctlTest, ExitCodes) {
    EXPECT_EQ(nsfdctl({"info", "999999"}).first, 5) << "no such process";
    EXPECT_EQ(nsfdctl({"ns", std::to_string(::getpid()), "bogus"}).first, 2) << "bad arguments";
    EXPECT_EQ(nsfdctl({"frobnicate"}).first, 2);
    EXPECT_EQ(nsfdctl({"signal", std::to_string(::getpid()), "SIGNOPE"}).first, 2);
    EXPECT_EQ(nsfdctl({"--bus", "unix:path=/nonexistent", "status"}).first, 3)
        << "daemon not running";
    EXPECT_EQ(nsfdctl({"--help"}).first, 0);
}

}  // namespace
}  // namespace nsfd::test

namespace nsfd::test {
namespace {

// The acceptance test of the client: a program built outside the project
// against the installed package (CMake package and pkg-config) does its job.
TEST_F(NsfdctlTest, ProgramOutsideTheProjectUsesTheInstalledClient) {
    if (NSFD_TEST_SANITIZED) {
        GTEST_SKIP() << "this build is sanitized: a plain outside program cannot load its "
                        "libraries (the normal build runs this test)";
    }
    char prefix[] = "/tmp/nsfd-install.XXXXXX";
    ASSERT_NE(::mkdtemp(prefix), nullptr);
    auto [built, log] = run({"sh", NSFD_TEST_SOURCE_DIR "/tests/external/build-consumer.sh",
                             NSFD_TEST_BUILD_DIR, prefix});
    ASSERT_EQ(built, 0) << log;
    std::string libs = std::string(prefix) + "/lib:" + prefix + "/lib/x86_64-linux-gnu";
    for (const std::string program : {"/consumer/build/consumer", "/consumer-pkgconfig"}) {
        auto [status, out] = run({"env", "LD_LIBRARY_PATH=" + libs, std::string(prefix) + program});
        EXPECT_EQ(status, 0) << program;
        EXPECT_EQ(out, "net ok exit 1280\n") << program;
    }
    auto [status, out] =
        run({"env", "LD_LIBRARY_PATH=" + libs, std::string(prefix) + "/library-demo"});
    EXPECT_EQ(status, 0);
    EXPECT_NE(out.find("exit status (wait status) 1792, exit code 7"), std::string::npos) << out;
    run({"rm", "-rf", prefix});
}

}  // namespace
}  // namespace nsfd::test

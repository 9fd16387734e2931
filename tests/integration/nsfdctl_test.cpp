// SPDX-License-Identifier: LGPL-2.1-or-later
// nsfdctl end to end, as a user runs it.
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <grp.h>

#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "fixture.hpp"

namespace nsfd::test {
namespace {

using nlohmann::json;

// Runs nsfdctl (as `user`); its exit code and stdout, and stderr after it if `withErrors`.
std::pair<int, std::string> runNsfdctl(const std::vector<std::string>& args, const uid_t* user,
                                       bool withErrors) {
    std::vector<std::string> argv;
    if (user != nullptr) {
        argv = {"setpriv", "--reuid=" + std::to_string(*user), "--regid=" + std::to_string(*user),
                "--clear-groups"};
    }
    if (withErrors) {
        argv.insert(argv.end(), {"sh", "-c", "exec \"$@\" 2>&1", "sh"});
    }
    argv.push_back(NSFD_TEST_NSFDCTL);
    argv.insert(argv.end(), args.begin(), args.end());
    auto [status, out] = run(argv);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

std::pair<int, std::string> nsfdctl(const std::vector<std::string>& args,
                                    std::optional<uid_t> user = std::nullopt) {
    return runNsfdctl(args, user ? &*user : nullptr, false);
}

std::pair<int, std::string> nsfdctlWithErrors(const std::vector<std::string>& args,
                                              std::optional<uid_t> user = std::nullopt) {
    return runNsfdctl(args, user ? &*user : nullptr, true);
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
    std::istringstream lines(text);
    std::string pidLine;
    while (std::getline(lines, pidLine) && pidLine.rfind("Pid:", 0) != 0) {
    }
    EXPECT_EQ(pidLine, "Pid:              " + pid) << text;

    EXPECT_EQ(nsfdctl({"untrack", "id:" + std::to_string(pidfd.id())}).first, 0);
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

// nsfdctl(1): exit 3 for every way of not reaching nsfdd, also when the bus
// fails to start it. Under systemd that is "Unit dbus-org.nsfd1.service not
// found." (the unit not enabled); here a bus of its own whose activation file
// starts a program that fails, or one that does not exist.
TEST_F(NsfdctlTest, ExitCode3WhenTheBusCannotStartNsfdd) {
    const std::string script = R"(
dir=$(mktemp -d /tmp/nsfd-activation.XXXXXX) || exit 1
mkdir "$dir/services"
printf '[D-BUS Service]\nName=org.nsfd1\nExec=%s\n' "$1" >"$dir/services/org.nsfd1.service"
cat >"$dir/bus.conf" <<EOF
<busconfig>
  <type>session</type>
  <listen>unix:path=$dir/bus</listen>
  <auth>EXTERNAL</auth>
  <servicedir>$dir/services</servicedir>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/><allow own="*"/>
  </policy>
</busconfig>
EOF
dbus-daemon --config-file="$dir/bus.conf" --nofork --nopidfile 2>/dev/null & bus=$!
i=0
while [ ! -S "$dir/bus" ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i + 1)); done
"$2" --bus "unix:path=$dir/bus" status 2>&1
code=$?
kill $bus; wait $bus; rm -rf "$dir"
echo "exit $code"
)";
    for (const char* program : {"/bin/false", "/nonexistent/nsfdd"}) {
        auto [status, out] = run({"sh", "-c", script, "sh", program, NSFD_TEST_NSFDCTL});
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << out;
        EXPECT_NE(out.find("nsfdd is not available: "), std::string::npos)
            << program << ": " << out;
        EXPECT_NE(out.find("exit 3\n"), std::string::npos) << program << ": " << out;
    }
}

// Whether `pid` (our child) is still running: not exited, not reaped.
bool running(pid_t pid) {
    siginfo_t info{};
    return ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
           info.si_pid == 0;
}

// Every argument has one spelling; a plain number is a pid, id:N or the object
// path names a tracked process by its nsfd id (issue 16, item 4).
TEST_F(NsfdctlTest, AnArgumentMeansOneThing) {
    Child child = Child::spawn();
    std::string pid = std::to_string(child.pid());
    PidFd pidfd = PidFd::open(child.pid());
    std::string id = std::to_string(pidfd.id());
    std::string path = "/org/nsfd1/process/" + id;
    auto trackedCount = [] { return json::parse(nsfdctl({"--json", "list"}).second).size(); };

    // An id is never read as a pid, nor a pid as an id.
    ASSERT_EQ(nsfdctl({"track", pid}).first, 0);
    // pidfs ids grow with every process the machine ever made: past pid_max's
    // ceiling (4194304) the id is no pid at all, and says so.
    if (pidfd.id() >= 4194304) {
        EXPECT_EQ(nsfdctl({"untrack", id}).first, 2) << id << " is no pid";
        EXPECT_EQ(trackedCount(), 1U);
    } else if (::kill(static_cast<pid_t>(pidfd.id()), 0) < 0 && errno == ESRCH) {
        EXPECT_EQ(nsfdctl({"untrack", id}).first, 5) << "no process has pid " << id;
        EXPECT_EQ(trackedCount(), 1U) << "untrack " << id << " means the pid, not the id";
    }
    EXPECT_EQ(nsfdctl({"untrack", "id:" + id}).first, 0);
    EXPECT_EQ(trackedCount(), 0U);
    ASSERT_EQ(nsfdctl({"track", pid}).first, 0);
    EXPECT_EQ(nsfdctl({"untrack", path}).first, 0);
    EXPECT_EQ(trackedCount(), 0U);
    ASSERT_EQ(nsfdctl({"track", pid}).first, 0);
    EXPECT_EQ(json::parse(nsfdctl({"--json", "info", "id:" + id}).second)["pid"], child.pid());
    EXPECT_EQ(json::parse(nsfdctl({"--json", "info", path}).second)["id"], pidfd.id());
    EXPECT_EQ(json::parse(nsfdctl({"--json", "ns", "id:" + id, "net"}).second).size(), 1U);
    EXPECT_EQ(nsfdctl({"info", "id:" + std::to_string(pidfd.id() + 1000000)}).first, 5);
    EXPECT_EQ(nsfdctl({"track", "id:" + id}).first, 2) << "track takes a pid";

    // Pids, ids, paths: anything but the one spelling is refused, before any call.
    for (const std::string& bad : std::vector<std::string>{"0",
                                                           "010",
                                                           "+" + pid,
                                                           " " + pid,
                                                           pid + " ",
                                                           pid + "x",
                                                           "0x10",
                                                           "1e3",
                                                           "-1",
                                                           "",
                                                           "4194304",
                                                           "99999999999999999999",
                                                           "id:",
                                                           "id:0",
                                                           "id:0" + id,
                                                           "id:+" + id,
                                                           "ID:" + id,
                                                           "id: " + id,
                                                           "/org/nsfd1/process/0" + id,
                                                           "/org/nsfd1/process/",
                                                           path + "/",
                                                           "org/nsfd1/process/" + id}) {
        EXPECT_EQ(nsfdctl({"info", bad}).first, 2) << "'" << bad << "'";
        EXPECT_EQ(nsfdctl({"untrack", bad}).first, 2) << "'" << bad << "'";
    }
    EXPECT_EQ(trackedCount(), 1U);
    // nsfdd too knows a process object by the one path it gave it.
    EXPECT_EQ(process(path)->Id(), pidfd.id());
    for (const std::string& other : {"/org/nsfd1/process/0" + id, "/org/nsfd1/process/00" + id}) {
        EXPECT_EQ(errorNameOf([&] { process(other)->GetInfo(); }), kUnknownObject) << other;
    }

    // Signals: a decimal number in range or a name; "0x9" used to send 0,
    // "1e3" SIGHUP, "15x" SIGTERM.
    for (const char* bad : {"0x9", "1e3", "15x", "9abc", "09", "+9", "-9", " 9", "65", "term",
                            "Sigterm", "SIG", "SIGSIGTERM", "TERM ", "1000", ""}) {
        EXPECT_EQ(nsfdctl({"signal", pid, bad}).first, 2) << "'" << bad << "'";
        EXPECT_TRUE(running(child.pid())) << "'" << bad << "' sent a signal";
    }
    EXPECT_EQ(nsfdctl({"signal", pid, "0"}).first, 0) << "0: kill(2)'s check, nothing sent";
    EXPECT_EQ(nsfdctl({"signal", pid, "CONT"}).first, 0);
    EXPECT_EQ(nsfdctl({"signal", pid, "SIGCONT"}).first, 0);
    EXPECT_EQ(nsfdctl({"signal", pid, "18"}).first, 0);
    EXPECT_TRUE(running(child.pid()));

    // Namespace types: each once, as /proc/PID/ns names it.
    EXPECT_EQ(nsfdctl({"ns", pid, "net", "net"}).first, 2);
    for (const char* bad : {"NET", "mount", "net ", "network", "all"}) {
        EXPECT_EQ(nsfdctl({"ns", pid, bad}).first, 2) << bad;
    }

    // Flags take no value; long options are spelled out; each is given once.
    EXPECT_EQ(nsfdctl({"--json=true", "status"}).first, 2);
    EXPECT_EQ(nsfdctl({"--json=false", "status"}).first, 2);
    for (const std::vector<std::string>& bad :
         std::vector<std::vector<std::string>>{{"--net=false"},
                                               {"--net=true"},
                                               {"--ne"},
                                               {"--net", "--net"},
                                               {"-S", "0x0", "--net"},
                                               {"-S", "+0", "--net"},
                                               {"-S", "0", "--setuid=0", "--net"},
                                               {"-G", "4294967295", "--net"},
                                               {"--root=", "--net"},
                                               {"--wd=", "--net"},
                                               {"--env=1", "--net"},
                                               {"-F1", "--net"},
                                               {"--no-fork=yes", "--net"},
                                               {"--all=1"}}) {
        std::vector<std::string> args = {"exec", pid};
        args.insert(args.end(), bad.begin(), bad.end());
        args.insert(args.end(), {"--", "true"});
        EXPECT_EQ(nsfdctl(args).first, 2) << bad.front();
    }

    EXPECT_EQ(nsfdctl({"signal", "id:" + id, "TERM"}).first, 0);
    int status = child.reap();
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) << status;
}

// A bad numeric argument says which argument it was and what was expected
// (issue 12, item 7: "Value net not in range 0.000000 to 1797693134862315...").
TEST_F(NsfdctlTest, ABadArgumentSaysWhichAndWhatWasExpected) {
    // Not this test's own pid: nsfdctl used to read "1e3" as SIGHUP.
    Child child = Child::spawn();
    std::string self = std::to_string(child.pid());
    struct Case {
        std::vector<std::string> args;
        std::string says;
    };
    for (const Case& c : std::vector<Case>{
             {{"ns", "net", "uts"},
              "PROCESS: expected a pid (a decimal number from 1 to 4194303), id:ID or "
              "/org/nsfd1/process/ID (ID: the nsfd id, a decimal number), container:ID, "
              "cgroup:PATH, unit:NAME, machine:NAME or PID:ID, got 'net'"},
             {{"track", "net"},
              "PROCESS: expected a pid (a decimal number from 1 to 4194303), id:ID"},
             {{"track", "id:5"}, "PROCESS: expected a pid or a target such as container:ID"},
             {{"info", "container:XYZ"},
              "PROCESS: expected container:ID, ID a container id or a prefix of one"},
             {{"ns", "12:034"}, "PROCESS: expected PID:ID, a pid and its pidfs id, in decimal"},
             {{"info", "99999999999"}, "PROCESS: expected a pid"},
             {{"untrack", "id:abc"}, "got 'id:abc'"},
             {{"signal", self, "1e3"},
              "SIGNAL: expected a signal: a decimal number from 0 to 64 or a name such as TERM or "
              "SIGTERM, got '1e3'"},
             {{"ns", self, "bogus"}, "TYPE: expected a namespace type (cgroup ipc mnt net pid"},
             {{"exec", "net", "--net", "true"}, "PROCESS: expected a pid"},
             {{"exec", self, "-S", "root", "--net", "true"},
              "-S: expected a decimal number from 0 to 4294967294, or follow, got 'root'"},
             {{"exec", self, "--setgid=-1", "--net", "true"}, "--setgid: expected a decimal"},
         }) {
        auto [code, out] = nsfdctlWithErrors(c.args);
        EXPECT_EQ(code, 2) << c.args.front() << " " << c.args.at(1);
        EXPECT_NE(out.find(c.says), std::string::npos) << out;
        EXPECT_EQ(out.find("not in range"), std::string::npos) << out;
    }
    EXPECT_TRUE(running(child.pid()));
    child.release(0);
    child.reap();
}

// --all enters what the caller does not share with PROCESS; setns(2) into a
// namespace the caller is in already is EPERM for a user (issue 16, item 5).
TEST_F(NsfdctlTest, ExecAllSkipsTheNamespacesTheCallerIsIn) {
    if (kUser == 0) {
        GTEST_SKIP() << "users nsfd-test-a and nsfd-test-b are missing (scripts/test creates them)";
    }
    Child own = spawnInOwnUserNamespace(kUser);
    auto [code, out] = nsfdctlWithErrors(
        {"exec", std::to_string(own.pid()), "--all", "--", "sh", "-c", "hostname; id -u"}, kUser);
    EXPECT_EQ(code, 0) << out;
    EXPECT_EQ(out, "users-own\n0\n");
    own.release(0);
    own.reap();
}

// -S/-G with a number or "follow", and --preserve-credentials, as nsenter.
TEST_F(NsfdctlTest, ExecSetsCredentialsAsNsenter) {
    if (kUser == 0) {
        GTEST_SKIP() << "users nsfd-test-a and nsfd-test-b are missing (scripts/test creates them)";
    }
    Child::Options options;
    options.cloneFlags = CLONE_NEWUTS;
    Child uts = Child::spawn({}, options);
    std::string user = std::to_string(kUser);
    auto [code, out] =
        nsfdctlWithErrors({"exec", std::to_string(uts.pid()), "--uts", "-S", user,
                           "--setgid=" + user, "--", "sh", "-c", "id -u; id -g; id -G"});
    EXPECT_EQ(code, 0) << out;
    EXPECT_EQ(out, user + "\n" + user + "\n" + user + "\n") << "no supplementary groups left";

    Child users = spawnAs(kUser);
    auto [followed, out2] = nsfdctlWithErrors({"exec", std::to_string(users.pid()), "--uts",
                                               "-Sfollow", "-G", "follow", "--", "id", "-u"});
    EXPECT_EQ(followed, 0) << out2;
    EXPECT_EQ(out2, user + "\n");

    // Root into a user namespace where uid 0 is kUser: uid 0 there by default;
    // kept (so unmapped there: the overflow uid) with --preserve-credentials.
    Child own = spawnInOwnUserNamespace(kUser);
    std::string pid = std::to_string(own.pid());
    EXPECT_EQ(nsfdctl({"exec", pid, "--user", "--uts", "--", "id", "-u"}).second, "0\n");
    std::string overflow = readFile("/proc/sys/kernel/overflowuid");
    EXPECT_EQ(nsfdctl({"exec", pid, "--user", "--uts", "--preserve-credentials", "--", "id", "-u"})
                  .second,
              overflow);
    for (Child* child : {&uts, &users, &own}) {
        child->release(0);
        child->reap();
    }
}

// -r/--root and -w/--wd: the target's directories (read as the caller, from
// /proc/PID) or the ones given.
TEST_F(NsfdctlTest, ExecRootAndWorkingDirectoryAsNsenter) {
    char dir[] = "/tmp/nsfd-root.XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    std::string top = dir;
    // A process chrooted, in a mount namespace of its own, into a tmpfs
    // holding /usr and a marker, working in /work.
    Child::Options options;
    options.cloneFlags = CLONE_NEWNS;
    Child chrooted = Child::spawn(
        [top] {
            if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0 ||
                ::mount("tmpfs", top.c_str(), "tmpfs", 0, "mode=755") < 0 ||
                ::mkdir((top + "/usr").c_str(), 0755) < 0 ||
                ::mount("/usr", (top + "/usr").c_str(), nullptr, MS_BIND | MS_REC, nullptr) < 0 ||
                ::mkdir((top + "/work").c_str(), 0755) < 0 ||
                ::mkdir((top + "/marker").c_str(), 0755) < 0) {
                return errno;
            }
            for (const char* link : {"bin", "lib", "lib64", "sbin"}) {
                if (::symlink((std::string("usr/") + link).c_str(), (top + "/" + link).c_str()) <
                    0) {
                    return errno;
                }
            }
            return ::chroot(top.c_str()) < 0 || ::chdir("/work") < 0 ? errno : 0;
        },
        options);
    std::string pid = std::to_string(chrooted.pid());
    auto [code, out] =
        nsfdctlWithErrors({"exec", pid, "--mnt", "-r", "-w", "--", "sh", "-c", "ls /; pwd"});
    EXPECT_EQ(code, 0) << out;
    EXPECT_EQ(out, "bin\nlib\nlib64\nmarker\nsbin\nusr\nwork\n/work\n");
    auto [given, out2] = nsfdctlWithErrors({"exec", pid, "--mnt", "--root=/proc/" + pid + "/root",
                                            "-w/proc/" + pid + "/root/marker", "--", "sh", "-c",
                                            "ls -d /marker; pwd"});
    EXPECT_EQ(given, 0) << out2;
    EXPECT_EQ(out2, "/marker\n/marker\n");

    Child::Options netOptions;
    netOptions.cloneFlags = CLONE_NEWNET;
    Child inUsr = Child::spawn([] { return ::chdir("/usr/share") < 0 ? errno : 0; }, netOptions);
    std::string other = std::to_string(inUsr.pid());
    EXPECT_EQ(nsfdctl({"exec", other, "--net", "-w", "--", "pwd"}).second, "/usr/share\n");
    EXPECT_EQ(nsfdctl({"exec", other, "--net", "--wd=/usr/lib", "--", "pwd"}).second, "/usr/lib\n");
    EXPECT_EQ(nsfdctl({"exec", other, "--net", "--wd=/nonexistent", "--", "pwd"}).first, 1);
    for (Child* child : {&chrooted, &inUsr}) {
        child->release(0);
        child->reap();
    }
    ::rmdir(dir);
}

// -F/--no-fork: with --pid the command runs in nsfdctl's own process, so in
// the caller's pid namespace (its children would be in the target's).
TEST_F(NsfdctlTest, ExecNoForkAsNsenter) {
    Child::Options options;
    options.cloneFlags = CLONE_NEWPID;
    Child init = Child::spawn({}, options);
    std::string pid = std::to_string(init.pid());
    auto nspidCount = [](const std::string& status) {
        std::size_t at = status.find("NSpid:");
        std::istringstream line(status.substr(at + 6, status.find('\n', at) - at - 6));
        std::size_t count = 0;
        for (std::string field; line >> field;) {
            ++count;
        }
        return count;
    };
    auto [forked, status] = nsfdctl({"exec", pid, "--pid", "--", "cat", "/proc/self/status"});
    EXPECT_EQ(forked, 0);
    EXPECT_EQ(nspidCount(status), 2U) << "a child in the target's pid namespace";
    auto [unforked, status2] =
        nsfdctl({"exec", pid, "--pid", "-F", "--", "cat", "/proc/self/status"});
    EXPECT_EQ(unforked, 0);
    EXPECT_EQ(nspidCount(status2), 1U) << "nsfdctl's own process, in the caller's pid namespace";
    EXPECT_EQ(nsfdctl({"exec", pid, "--pid", "--no-fork", "--", "true"}).first, 0);
    init.release(0);
    init.reap();
}

// A process that runs `sleep 300` with exactly `environment`, as `uid`.
class SleepWithEnvironment {
  public:
    SleepWithEnvironment(std::vector<std::string> environment, uid_t uid) {
        pid_ = test::forkProcess();
        if (pid_ == 0) {
            std::vector<char*> env;
            env.reserve(environment.size() + 1);
            for (std::string& entry : environment) {
                env.push_back(entry.data());
            }
            env.push_back(nullptr);
            char sleep[] = "sleep", seconds[] = "300";
            char* argv[] = {sleep, seconds, nullptr};
            if (::setgroups(0, nullptr) == 0 && ::setresgid(uid, uid, uid) == 0 &&
                ::setresuid(uid, uid, uid) == 0) {
                ::execve("/bin/sleep", argv, env.data());
            }
            ::_exit(127);
        }
        for (int i = 0; i < 500 && readFile("/proc/" + std::to_string(pid_) + "/comm") != "sleep\n";
             ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    }
    ~SleepWithEnvironment() {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
    }
    std::string pid() const { return std::to_string(pid_); }

  private:
    pid_t pid_;
};

// --env: the target's environment, read from /proc/PID/environ by nsfdctl as
// the caller, so only where the kernel lets the caller read it.
TEST_F(NsfdctlTest, ExecEnvIsTheTargetsAsTheCallerMayReadIt) {
    SleepWithEnvironment target({"NSFD_TEST_MARK=from-target", "PATH=/usr/bin:/bin"}, 0);
    auto [code, out] = nsfdctlWithErrors({"exec", target.pid(), "--uts", "--env", "--", "env"});
    EXPECT_EQ(code, 0) << out;
    EXPECT_EQ(out, "NSFD_TEST_MARK=from-target\nPATH=/usr/bin:/bin\n");
    EXPECT_EQ(nsfdctl({"exec", target.pid(), "--uts", "--", "env"}).second.find("NSFD_TEST_MARK"),
              std::string::npos)
        << "without --env, the caller's environment";
}

// nsfdctl over nsfdd's Varlink socket: --transport, and each kind of command.
class NsfdctlVarlinkTest : public NsfdctlTest {
  protected:
    std::string varlinkPath() const override { return dir_.socket(); }
    void SetUp() override {
        ::setenv("NSFD_VARLINK_SOCKET", dir_.socket().c_str(), 1);
        NsfdctlTest::SetUp();
    }
    void TearDown() override {
        NsfdctlTest::TearDown();
        ::setenv("NSFD_VARLINK_SOCKET", kNoVarlinkSocket, 1);
    }
    SocketDir dir_;
};

// nsfdd refuses Varlink connections past 64 of a uid (README "Limits") by
// closing them at once: --transport=auto then takes the bus, as it does when
// nothing listens on the socket; --transport=varlink says it is unavailable.
TEST_F(NsfdctlVarlinkTest, AutoTakesTheBusWhenTheSocketRefusesTheConnectionForItsLimit) {
    int fdsBefore = daemon_->openFdCount();
    std::vector<UniqueFd> held;
    const std::string ask =
        std::string(R"({"method":"org.nsfd1.Manager.GetServiceInfo","parameters":{}})") + '\0';
    // Each answered once: nsfdd has taken it.
    auto connectAndAsk = [&]() -> bool {
        UniqueFd socket(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        (void)std::snprintf(address.sun_path, sizeof(address.sun_path), "%s",
                            dir_.socket().c_str());
        if (::connect(socket.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) < 0 ||
            ::send(socket.get(), ask.data(), ask.size(), MSG_NOSIGNAL) !=
                static_cast<ssize_t>(ask.size())) {
            return false;
        }
        std::string reply;
        char buf[4096];
        while (reply.find('\0') == std::string::npos) {
            pollfd pfd{socket.get(), POLLIN, 0};
            ssize_t n =
                ::poll(&pfd, 1, 10'000) == 1 ? ::recv(socket.get(), buf, sizeof(buf), 0) : 0;
            if (n <= 0) {
                return false;  // closed: refused
            }
            reply.append(buf, static_cast<std::size_t>(n));
        }
        held.push_back(std::move(socket));
        return true;
    };
    while (held.size() < 100 && connectAndAsk()) {
    }
    ASSERT_EQ(held.size(), 64U) << "nsfdd's connections per uid";
    EXPECT_EQ(json::parse(nsfdctl({"--json", "status"}).second)["transport"], "bus");
    EXPECT_EQ(json::parse(nsfdctl({"--json", "--transport=auto", "status"}).second)["transport"],
              "bus");
    auto [code, out] = nsfdctlWithErrors({"--transport=varlink", "status"});
    EXPECT_NE(code, 0) << out;
    held.pop_back();
    EXPECT_EQ(json::parse(nsfdctl({"--json", "status"}).second)["transport"], "varlink");
    held.clear();
    EXPECT_TRUE(waitUntil([&] { return daemon_->openFdCount() <= fdsBefore; }))
        << daemon_->openFdCount() << " fds, " << fdsBefore << " before";
}

TEST_F(NsfdctlVarlinkTest, TheSocketWhenSomethingListensThereAndTheBusOnRequest) {
    EXPECT_EQ(json::parse(nsfdctl({"--json", "status"}).second)["transport"], "varlink");
    EXPECT_EQ(json::parse(nsfdctl({"--json", "--transport=varlink", "status"}).second)["transport"],
              "varlink");
    EXPECT_EQ(json::parse(nsfdctl({"--json", "--transport", "bus", "status"}).second)["transport"],
              "bus");
    EXPECT_EQ(json::parse(nsfdctl({"--json", "--bus", busAddress(), "status"}).second)["transport"],
              "bus");
    auto [both, bothOut] =
        nsfdctlWithErrors({"--transport=varlink", "--bus", busAddress(), "status"});
    EXPECT_EQ(both, 2) << bothOut;
    EXPECT_NE(bothOut.find("--bus"), std::string::npos) << bothOut;
    auto [unknown, unknownOut] = nsfdctl({"--transport=carrier-pigeon", "status"});
    EXPECT_EQ(unknown, 2) << unknownOut;

    Child::Options options;
    options.cloneFlags = CLONE_NEWUTS | CLONE_NEWNET;
    Child child =
        Child::spawn([] { return ::sethostname("over-varlink", 12) == 0 ? 0 : errno; }, options);
    std::string pid = std::to_string(child.pid());
    PidFd pidfd = PidFd::open(child.pid());
    json tracked = json::parse(nsfdctl({"--json", "track", pid}).second);
    EXPECT_EQ(tracked["id"], pidfd.id());
    json list = json::parse(nsfdctl({"--json", "list"}).second);
    ASSERT_EQ(list.size(), 1U);
    EXPECT_EQ(list[0]["path"], tracked["path"]);
    json info = json::parse(nsfdctl({"--json", "info", pid}).second);
    EXPECT_EQ(info["id"], pidfd.id());
    json ns = json::parse(nsfdctl({"--json", "ns", pid, "net", "uts"}).second);
    EXPECT_EQ(ns.size(), 2U) << ns;
    auto [code, out] = nsfdctl({"exec", pid, "--uts", "--", "hostname"});
    EXPECT_EQ(code, 0) << out;
    EXPECT_EQ(out, "over-varlink\n");
    EXPECT_EQ(nsfdctl({"untrack", "id:" + std::to_string(pidfd.id())}).first, 0);
    EXPECT_EQ(nsfdctl({"signal", pid, "KILL"}).first, 0);
    child.reap();

    // The socket asked for and nobody there: "nsfdd is not available", exit 3.
    ::setenv("NSFD_VARLINK_SOCKET", kNoVarlinkSocket, 1);
    auto [absent, absentOut] = nsfdctl({"--transport=varlink", "status"});
    EXPECT_EQ(absent, 3) << absentOut;
    EXPECT_EQ(json::parse(nsfdctl({"--json", "status"}).second)["transport"], "bus");
}

class NsfdctlGrantTest : public NsfdctlTest {
  protected:
    std::string config() const override { return kGrantConfig; }
};

TEST_F(NsfdctlGrantTest, ExecEnvIsNotGrantedByNsfdd) {
    if (kUser == 0) {
        GTEST_SKIP() << "users nsfd-test-a and nsfd-test-b are missing (scripts/test creates them)";
    }
    // nsfdd grants group "users" the net namespace of anyone's process; the
    // environment is the kernel's to give, and it does not give another user's.
    SleepWithEnvironment others({"NSFD_TEST_MARK=secret"}, kOtherUser);
    std::vector<std::string> argv = {"setpriv",
                                     "--reuid=" + std::to_string(kUser),
                                     "--regid=" + std::to_string(kUser),
                                     "--groups=" + std::to_string(kGrantedGroup),
                                     "sh",
                                     "-c",
                                     "exec \"$@\" 2>&1",
                                     "sh",
                                     NSFD_TEST_NSFDCTL};
    auto runAsGranted = [&](const std::vector<std::string>& args) {
        std::vector<std::string> full = argv;
        full.insert(full.end(), args.begin(), args.end());
        auto [status, out] = run(full);
        return std::pair<int, std::string>{WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
    };
    EXPECT_EQ(runAsGranted({"ns", others.pid(), "net"}).first, 0) << "granted";
    auto [code, out] = runAsGranted({"exec", others.pid(), "--net", "--env", "--", "env"});
    EXPECT_EQ(code, 4) << out;
    EXPECT_NE(
        out.find("Failed to open the environment of pid " + others.pid() + ": Permission denied"),
        std::string::npos)
        << out;
    EXPECT_EQ(out.find("secret"), std::string::npos);
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

// SPDX-License-Identifier: LGPL-2.1-or-later
// Targets as users name them, through nsfdctl and a real nsfdd: containers made
// by hand in the cgroup2 hierarchy (named as docker, podman, containerd and
// CRI-O name them), cgroup:PATH and PID:ID; from nsfdd's pid namespace and
// from one of the caller's own, as root, as a granted user and as one that may
// not see the container.
#include <sched.h>
#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include "fake_container.hpp"
#include "fixture.hpp"
#include "nsfd/client.hpp"

namespace nsfd::test {
namespace {

using nlohmann::json;

class SelectorTest : public DaemonTest {
  protected:
    std::string config() const override { return kGrantConfig; }

    void SetUp() override {
        if (cgroup2Root().empty()) {
            GTEST_SKIP() << "no cgroup2 hierarchy mounted";
        }
        DaemonTest::SetUp();
        base_ = "/nsfd-itest-" + std::to_string(::getpid());
    }

    // nsfdctl's exit code, stdout and stderr.
    std::tuple<int, std::string, std::string> run(const std::vector<std::string>& args,
                                                  std::optional<uid_t> uid = std::nullopt,
                                                  const std::string& groups = "",
                                                  const std::string& prefix = "") {
        std::vector<std::string> argv;
        if (uid) {
            argv = {"setpriv", "--reuid=" + std::to_string(*uid), "--regid=" + std::to_string(*uid),
                    groups.empty() ? "--clear-groups" : "--groups=" + groups};
        }
        if (!prefix.empty()) {
            argv.insert(argv.end(), {"unshare", "--pid", "--fork", "--mount-proc"});
        }
        argv.push_back(NSFD_TEST_NSFDCTL);
        argv.insert(argv.end(), args.begin(), args.end());
        int errPipe[2];
        EXPECT_EQ(::pipe2(errPipe, O_CLOEXEC), 0);
        UniqueFd errRead(errPipe[0]), errWrite(errPipe[1]);
        auto [status, out] = forkAndRead([&](int fd) {
            ::dup2(fd, STDOUT_FILENO);
            ::dup2(errWrite.get(), STDERR_FILENO);
            std::vector<char*> raw;
            raw.reserve(argv.size() + 1);
            for (std::string& arg : argv) {
                raw.push_back(arg.data());
            }
            raw.push_back(nullptr);
            ::execvp(raw[0], raw.data());
            ::_exit(127);
        });
        errWrite.reset();
        std::string err;
        char buffer[4096];
        for (ssize_t n; (n = ::read(errRead.get(), buffer, sizeof(buffer))) > 0;) {
            err.append(buffer, static_cast<std::size_t>(n));
        }
        return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out, err};
    }

    std::string base_;
};

std::uint64_t netIdOf(pid_t pid) {
    return PidFd::open(pid).namespaceFd(NsType::Net).id();
}

// The net namespace id in `nsfdctl --json ns ... net`'s answer (0 if none).
std::uint64_t netIdIn(const std::string& out) {
    json answer = json::parse(out, nullptr, false);
    return answer.is_object() && answer.contains("net") ? answer["net"]["id"].get<std::uint64_t>()
                                                        : 0;
}

TEST_F(SelectorTest, AContainerByItsShortIdGivesItsNetNamespaceAndInfo) {
    std::string id = makeContainerId();
    FakeContainer container(base_ + "/system.slice/docker-" + id + ".scope", "c1");
    std::string shortId = "container:" + id.substr(0, 12);
    auto [code, out, err] = run({"--json", "ns", shortId, "net"});
    ASSERT_EQ(code, 0) << err;
    EXPECT_EQ(netIdIn(out), netIdOf(container.pid()));
    auto [infoCode, info, infoErr] = run({"--json", "info", shortId});
    ASSERT_EQ(infoCode, 0) << infoErr;
    json parsed = json::parse(info);
    EXPECT_EQ(parsed["pid"].get<pid_t>(), container.pid());
    EXPECT_EQ(parsed["id"].get<std::uint64_t>(), PidFd::open(container.pid()).id());
    // Tracking by selector gives the id the methods by id take.
    auto [trackCode, tracked, trackErr] = run({"--json", "track", shortId});
    ASSERT_EQ(trackCode, 0) << trackErr;
    std::uint64_t trackedId = json::parse(tracked)["id"].get<std::uint64_t>();
    EXPECT_EQ(trackedId, PidFd::open(container.pid()).id());
    auto [byId, byIdOut, byIdErr] = run({"--json", "ns", "id:" + std::to_string(trackedId), "net"});
    EXPECT_EQ(byId, 0) << byIdErr;
    EXPECT_EQ(netIdIn(byIdOut), netIdOf(container.pid()));
    EXPECT_EQ(std::get<0>(run({"untrack", shortId})), 0);
}

TEST_F(SelectorTest, ASharedPrefixExits2NamingBothAndALongerOneWorks) {
    std::string shared = makeContainerId().substr(0, 12);
    std::string a = makeContainerId(shared + "a"), b = makeContainerId(shared + "b");
    FakeContainer first(base_ + "/machine.slice/libpod-" + a + ".scope", "a");
    FakeContainer second(base_ + "/kubepods/besteffort/pod1/" + b, "b");
    auto [code, out, err] = run({"ns", "container:" + shared, "net"});
    EXPECT_EQ(code, 2) << err;
    EXPECT_NE(err.find(a.substr(0, 12)), std::string::npos) << err;
    EXPECT_NE(err.find(b.substr(0, 12)), std::string::npos) << err;
    auto [longer, longerOut, longerErr] =
        run({"--json", "ns", "container:" + b.substr(0, 13), "net"});
    ASSERT_EQ(longer, 0) << longerErr;
    EXPECT_EQ(netIdIn(longerOut), netIdOf(second.pid()));
}

TEST_F(SelectorTest, AnUnknownContainerExits5AndMalformedOnesExit2) {
    EXPECT_EQ(std::get<0>(run({"ns", "container:" + makeContainerId(), "net"})), 5);
    EXPECT_EQ(std::get<0>(run({"info", "container:XYZ"})), 2);
    EXPECT_EQ(std::get<0>(run({"info", "cgroup:relative/path"})), 2);
    EXPECT_EQ(std::get<0>(run({"info", "4711:0"})), 2);
}

TEST_F(SelectorTest, ACgroupByPathAndAPidWithItsIdWork) {
    std::string id = makeContainerId();
    FakeContainer container(base_ + "/libpod_parent/libpod-" + id, "c3");
    auto [code, out, err] = run({"--json", "info", "cgroup:" + container.path()});
    ASSERT_EQ(code, 0) << err;
    EXPECT_EQ(json::parse(out)["pid"].get<pid_t>(), container.pid());

    std::uint64_t pidfsId = PidFd::open(container.pid()).id();
    std::string pidWithId = std::to_string(container.pid()) + ":" + std::to_string(pidfsId);
    auto [nsCode, nsOut, nsErr] = run({"--json", "ns", pidWithId, "net"});
    ASSERT_EQ(nsCode, 0) << nsErr;
    EXPECT_EQ(netIdIn(nsOut), netIdOf(container.pid()));
    std::string wrong = std::to_string(container.pid()) + ":" + std::to_string(pidfsId + 1000000);
    EXPECT_EQ(std::get<0>(run({"ns", wrong, "net"})), 5);
    EXPECT_EQ(std::get<0>(run({"info", wrong})), 5);
}

TEST_F(SelectorTest, FromAPidNamespaceOfItsOwnRootAndAGrantedUserGetTheNetNamespace) {
    if (kUser == 0) {
        GTEST_SKIP() << "user nsfd-test-a is missing (scripts/test-users)";
    }
    std::string id = makeContainerId();
    FakeContainer container(base_ + "/kubepods.slice/crio-" + id + ".scope", "c4");
    std::string selector = "container:" + id.substr(0, 12);
    // unshare --pid --fork --mount-proc: nsfdctl sees none of the host's pids.
    auto [code, out, err] = run({"--json", "ns", selector, "net"}, std::nullopt, "", "unshare");
    ASSERT_EQ(code, 0) << err;
    EXPECT_EQ(netIdIn(out), netIdOf(container.pid()));
    auto [infoCode, info, infoErr] = run({"--json", "info", selector}, std::nullopt, "", "unshare");
    ASSERT_EQ(infoCode, 0) << infoErr;
    EXPECT_EQ(json::parse(info)["pid"].get<pid_t>(), 0) << "no pid of nsfdd's namespace";

    // A user of the granted group ("users": net and uts, info) in a pid
    // namespace of its own (unshare needs CAP_SYS_ADMIN: made as root, then
    // the user is taken on inside by setpriv).
    std::string command = std::string("setpriv --reuid=") + std::to_string(kUser) +
                          " --regid=" + std::to_string(kUser) +
                          " --groups=" + std::to_string(kGrantedGroup) + " " + NSFD_TEST_NSFDCTL +
                          " --json ns " + selector + " net";
    auto [status, userOut] = forkAndRead([&](int fd) {
        ::dup2(fd, STDOUT_FILENO);
        ::dup2(fd, STDERR_FILENO);
        ::execlp("unshare", "unshare", "--pid", "--fork", "--mount-proc", "sh", "-c",
                 command.c_str(), nullptr);
        ::_exit(127);
    });
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << userOut;
    EXPECT_EQ(netIdIn(userOut), netIdOf(container.pid()));
}

TEST_F(SelectorTest, AUserWhoMayNotSeeTheContainerIsToldWhatAnAbsentOneIsTold) {
    if (kOtherUser == 0) {
        GTEST_SKIP() << "user nsfd-test-b is missing (scripts/test-users)";
    }
    std::string id = makeContainerId();
    FakeContainer container(base_ + "/system.slice/cri-containerd-" + id + ".scope", "c5");
    std::string present = id.substr(0, 12);
    std::string absent = makeContainerId().substr(0, 12);
    auto [code, out, err] = run({"info", "container:" + present}, kOtherUser);
    auto [absentCode, absentOut, absentErr] = run({"info", "container:" + absent}, kOtherUser);
    EXPECT_EQ(code, 5) << err;
    EXPECT_EQ(absentCode, 5) << absentErr;
    // The same words, but for the id asked about.
    std::string said = err, saidAbsent = absentErr;
    said.replace(said.find(present), present.size(), "ID");
    saidAbsent.replace(saidAbsent.find(absent), absent.size(), "ID");
    EXPECT_EQ(said, saidAbsent);
    EXPECT_EQ(std::get<0>(run({"ns", "container:" + present, "net"}, kOtherUser)), 5);
    // The granted group sees it.
    EXPECT_EQ(std::get<0>(
                  run({"info", "container:" + present}, kOtherUser, std::to_string(kGrantedGroup))),
              0);
}

// A real container: Debian's podman (with runc: crun refuses hybrid cgroups)
// running one from a busybox rootfs imported without a registry.
TEST_F(SelectorTest, ARealPodmanContainerByItsShortId) {
    for (const char* tool : {"/usr/bin/podman", "/usr/sbin/runc", "/bin/busybox"}) {
        if (::access(tool, X_OK) != 0) {
            GTEST_SKIP() << tool << " is missing (apt-get install podman runc busybox-static)";
        }
    }
    char dir[] = "/tmp/nsfd-podman-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    std::string root = std::string(dir) + "/rootfs";
    auto shell = [](const std::string& script) {
        return test::run({"sh", "-c", script + " 2>&1"});
    };
    auto [made, madeOut] =
        shell("mkdir -p " + root + "/bin && cp /bin/busybox " + root + "/bin/ && ln -s busybox " +
              root + "/bin/sh && ln -s busybox " + root + "/bin/sleep && tar -C " + root + " -cf " +
              dir + "/rootfs.tar . && podman import " + dir + "/rootfs.tar localhost/nsfd-busybox");
    std::string started;
    int status = -1;
    if (made == 0) {
        std::tie(status, started) = shell(
            "podman --runtime runc run -d --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 "
            "--network none localhost/nsfd-busybox /bin/sleep 300");
    }
    shell(std::string("rm -rf ") + dir);
    if (made != 0 || status != 0) {
        GTEST_SKIP() << "podman cannot run a container here: " << madeOut << started;
    }
    std::string id = started.substr(0, started.find('\n'));
    ASSERT_EQ(id.size(), 64U) << started;
    auto [inspected, pidText] = shell("podman inspect -f '{{.State.Pid}}' " + id);
    pid_t pid = inspected == 0 ? static_cast<pid_t>(std::stol(pidText)) : 0;
    std::string selector = "container:" + id.substr(0, 12);
    std::uint64_t expected = pid > 0 ? netIdOf(pid) : 0;
    auto [code, out, err] = run({"--json", "ns", selector, "net"});
    auto [infoCode, info, infoErr] = run({"--json", "info", selector});
    shell("podman rm -f -t 0 " + id);
    ASSERT_GT(pid, 0) << pidText;
    ASSERT_EQ(code, 0) << err;
    EXPECT_EQ(netIdIn(out), expected) << "podman's container " << id;
    EXPECT_NE(netIdIn(out), NsFd::current(NsType::Net).id()) << "--network none: its own";
    ASSERT_EQ(infoCode, 0) << infoErr;
    EXPECT_EQ(json::parse(info)["pid"].get<pid_t>(), pid) << "podman inspect's State.Pid";
}

// The D-Bus contract itself, as busctl would call it: PID:ID is resolved by
// nsfdd for a caller in its pid namespace.
TEST_F(SelectorTest, TheBusMethodsBySelector) {
    std::string shared = makeContainerId().substr(0, 12);
    std::string id = makeContainerId(shared + "0");
    FakeContainer container(base_ + "/system.slice/docker-" + id + ".scope", "c9");
    FakeContainer other(base_ + "/system.slice/docker-" + makeContainerId(shared + "1") + ".scope",
                        "c10");
    std::uint64_t pidfsId = PidFd::open(container.pid()).id();
    auto fds = manager_->GetNamespacesBySelector("container:" + id, {"net", "uts"});
    ASSERT_EQ(fds.size(), 2U);
    expectSameNamespace(fds.at("net"), nsPath(container.pid(), "net"));
    expectSameNamespace(fds.at("uts"), nsPath(container.pid(), "uts"));
    auto info = manager_->GetProcessInfoBySelector(std::to_string(container.pid()) + ":" +
                                                   std::to_string(pidfsId));
    EXPECT_EQ(info.at("Pid").get<uint32_t>(), static_cast<uint32_t>(container.pid()));
    EXPECT_EQ(info.at("Id").get<uint64_t>(), pidfsId);
    EXPECT_EQ(errorNameOf([&] {
                  manager_->GetProcessInfoBySelector(std::to_string(container.pid()) + ":" +
                                                     std::to_string(pidfsId + 1));
              }),
              err::kNoSuchProcess);
    EXPECT_EQ(errorNameOf([&] { manager_->GetProcessInfoBySelector("container:" + shared); }),
              err::kInvalidArgs);
    EXPECT_EQ(errorNameOf([&] { manager_->GetProcessInfoBySelector("pid 1"); }), err::kInvalidArgs);
    std::string path = manager_->TrackProcessBySelector("container:" + id);
    EXPECT_EQ(path, "/org/nsfd1/process/" + std::to_string(pidfsId));
    manager_->UntrackProcess(path);
    manager_->SendSignalBySelector("container:" + id, 0);
    // exec by selector enters the container's namespaces.
    auto [code, out, err] =
        run({"exec", "container:" + id.substr(0, 13), "--net", "--uts", "--", "hostname"});
    EXPECT_EQ(code, 0) << err;
    EXPECT_EQ(out, "c9\n");
}

// unit: and machine: ask systemd and machined on nsfdd's bus; the test bus has
// neither (tests/system/run has systemd as PID 1, and tests unit: there).
TEST_F(SelectorTest, UnitAndMachineSayWhenThereIsNoSystemdToAsk) {
    for (const char* selector : {"unit:nsfd-none.service", "machine:nsfd-none"}) {
        auto [code, out, err] = run({"info", selector});
        EXPECT_EQ(code, 1) << selector << ": " << err;
        EXPECT_NE(err.find(std::string(selector).substr(0, 4) == "unit" ? "systemd" : "machined"),
                  std::string::npos)
            << err;
    }
    EXPECT_EQ(std::get<0>(run({"info", "unit:a/b"})), 2);
    EXPECT_EQ(std::get<0>(run({"info", "machine:"})), 2);
}

// The same over Varlink, nsfdd's socket.
class VarlinkSelectorTest : public SelectorTest {
  protected:
    std::string varlinkPath() const override { return dir_.socket(); }
    SocketDir dir_;
};

TEST_F(VarlinkSelectorTest, AContainerByItsShortIdOverVarlink) {
    std::string id = makeContainerId();
    FakeContainer container(base_ + "/docker/" + id, "c6");
    std::string selector = "container:" + id.substr(0, 12);
    ::setenv("NSFD_VARLINK_SOCKET", dir_.socket().c_str(), 1);
    auto [code, out, err] = run({"--transport=varlink", "--json", "ns", selector, "net"});
    auto [infoCode, info, infoErr] = run({"--transport=varlink", "--json", "info", selector});
    auto [ambiguous, ambiguousOut, ambiguousErr] =
        run({"--transport=varlink", "info", "container:" + makeContainerId()});
    ::setenv("NSFD_VARLINK_SOCKET", kNoVarlinkSocket, 1);
    ASSERT_EQ(code, 0) << err;
    EXPECT_EQ(netIdIn(out), netIdOf(container.pid()));
    ASSERT_EQ(infoCode, 0) << infoErr;
    EXPECT_EQ(json::parse(info)["pid"].get<pid_t>(), container.pid());
    EXPECT_EQ(ambiguous, 5) << ambiguousErr;
}

// libnsfd-client's calls by selector, on both transports.
TEST_F(VarlinkSelectorTest, TheClientNamesContainersOnBothTransports) {
    std::string shared = makeContainerId().substr(0, 12);
    std::string id = makeContainerId(shared + "0");
    std::string other = makeContainerId(shared + "1");
    FakeContainer container(base_ + "/system.slice/docker-" + id + ".scope", "c7");
    FakeContainer second(base_ + "/system.slice/docker-" + other + ".scope", "c8");
    std::uint64_t pidfsId = PidFd::open(container.pid()).id();
    for (bool varlink : {false, true}) {
        SCOPED_TRACE(varlink ? "varlink" : "bus");
        Client client = varlink ? Client::varlink(dir_.socket()) : Client::connect(busAddress());
        std::string selector = "container:" + id.substr(0, 13);
        EXPECT_EQ(client.namespaceFd(selector, NsType::Net).id(), netIdOf(container.pid()));
        std::map<NsType, NsFd> fds = client.namespaceFds(selector, std::vector{NsType::Uts});
        ASSERT_EQ(fds.count(NsType::Uts), 1U);
        EXPECT_EQ(fds.at(NsType::Uts).id(),
                  PidFd::open(container.pid()).namespaceFd(NsType::Uts).id());
        ProcessInfo info = client.info(selector);
        EXPECT_EQ(info.pid, container.pid());
        EXPECT_EQ(info.id, pidfsId);
        TrackedProcess tracked = client.track(selector);
        EXPECT_EQ(tracked.id(), pidfsId);
        EXPECT_EQ(tracked.namespaceFd(NsType::Net).id(), netIdOf(container.pid()));
        tracked.untrack();
        std::string pidWithId = std::to_string(container.pid()) + ":" + std::to_string(pidfsId);
        EXPECT_EQ(client.info(pidWithId).id, pidfsId);
        EXPECT_THROW(
            client.info(std::to_string(container.pid()) + ":" + std::to_string(pidfsId + 1)),
            NoSuchProcess);
        EXPECT_THROW(client.info("container:" + shared), InvalidArgument);
        EXPECT_THROW(client.info("container:" + makeContainerId()), NoSuchProcess);
        EXPECT_THROW(client.info("container:NOT-HEX"), InvalidArgument);
        client.sendSignal(selector, 0);
    }
}

}  // namespace
}  // namespace nsfd::test

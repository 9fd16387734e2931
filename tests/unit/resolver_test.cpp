// SPDX-License-Identifier: LGPL-2.1-or-later
// The core's resolution of targets as users name them (daemon/core/resolver.hpp),
// on containers made by hand in the real cgroup2 hierarchy, named as each
// runtime names them, with no bus and no nsfdd.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <map>

#include "child.hpp"
#include "core/errors.hpp"
#include "core/resolver.hpp"
#include "fake_container.hpp"
#include "nsfd/decimal.hpp"
#include "nsfd/features.hpp"
#include "nsfd/ns.hpp"

namespace nsfd::test {
namespace {

using daemon::Resolver;
using daemon::Selector;
using daemon::SelectorKind;
using daemon::ServiceError;
using nsfd::ErrorKind;

// The kind of the ServiceError `fn` throws, and its message.
std::pair<ErrorKind, std::string> serviceErrorOf(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const ServiceError& e) {
        return {e.kind(), e.what()};
    }
    ADD_FAILURE() << "no ServiceError";
    return {ErrorKind::Failed, ""};
}

TEST(SelectorTest, EachKindHasOneSpelling) {
    Selector s = daemon::parseSelector("container:0123abc");
    EXPECT_EQ(s.kind, SelectorKind::Container);
    EXPECT_EQ(s.value, "0123abc");
    EXPECT_EQ(daemon::parseSelector("cgroup:/system.slice/x.service").value,
              "/system.slice/x.service");
    EXPECT_EQ(daemon::parseSelector("unit:nginx.service").kind, SelectorKind::Unit);
    EXPECT_EQ(daemon::parseSelector("machine:web").kind, SelectorKind::Machine);
    Selector p = daemon::parseSelector("4711:123456");
    EXPECT_EQ(p.kind, SelectorKind::PidWithId);
    EXPECT_EQ(p.pid, 4711);
    EXPECT_EQ(p.id, 123456U);
    for (const char* bad :
         {"container:", "container:ABC", "container:xyz", "cgroup:", "cgroup:relative",
          "cgroup:/a/../b", "cgroup:/a//b", "unit:", "unit:a/b", "machine:", "04711:1", "4711:0",
          "0:5", "4711:", ":5", "4711:+5", "4711:0x5", "nothing:here"}) {
        EXPECT_EQ(serviceErrorOf([&] { daemon::parseSelector(bad); }).first, ErrorKind::InvalidArgs)
            << bad;
    }
    EXPECT_TRUE(daemon::looksLikeSelector("container:1"));
    EXPECT_TRUE(daemon::looksLikeSelector("12:34"));
    EXPECT_FALSE(daemon::looksLikeSelector("4711"));
    EXPECT_FALSE(daemon::looksLikeSelector("id:5"));
}

TEST(SelectorTest, NumbersAreTakenAsWrittenAndNothingStrtoulWouldAlsoTake) {
    EXPECT_EQ(parseCanonicalDecimal("0", 10), 0U);
    EXPECT_EQ(parseCanonicalDecimal("4194303", 4194303), 4194303U);
    EXPECT_EQ(parseCanonicalDecimal("18446744073709551615", UINT64_MAX), UINT64_MAX);
    for (std::string_view text :
         {"", "011", "+9", "-9", " 9", "9 ", "0x9", "9abc", "4194304", "18446744073709551616"}) {
        EXPECT_FALSE(parseCanonicalDecimal(text, text == "4194304" ? 4194303 : UINT64_MAX))
            << "'" << text << "'";
    }
}

TEST(SelectorTest, ContainerIdsAreReadFromEachRuntimesCgroupNames) {
    std::string id = makeContainerId();
    for (const std::string& name :
         {"docker-" + id + ".scope", "libpod-" + id + ".scope", "cri-containerd-" + id + ".scope",
          "crio-" + id + ".scope", id, "libpod-" + id}) {
        EXPECT_EQ(daemon::containerIdOfCgroupName(name).value_or(""), id) << name;
    }
    for (const std::string& name :
         {"libpod-conmon-" + id + ".scope", "docker-" + id.substr(1) + ".scope",
          std::string("docker.service"), "podman-" + id + ".scope", id + ".scope",
          std::string("init.scope"), "docker-" + id + ".slice"}) {
        EXPECT_FALSE(daemon::containerIdOfCgroupName(name)) << name;
    }
}

TEST(SelectorTest, TheCgroup2MountIsFoundPureOrHybrid) {
    char path[] = "/tmp/nsfd-mountinfo-XXXXXX";
    int fd = ::mkstemp(path);
    ASSERT_GE(fd, 0);
    ::close(fd);
    auto mountinfo = [&](const std::string& text) {
        std::ofstream(path) << text;
        return daemon::findCgroup2Mount(path);
    };
    EXPECT_EQ(mountinfo("24 30 0:22 / /sys rw,nosuid shared:7 - sysfs sysfs rw\n"
                        "33 24 0:29 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw\n"),
              "/sys/fs/cgroup");
    EXPECT_EQ(mountinfo("34 33 0:30 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
                        "35 33 0:31 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n"),
              "/sys/fs/cgroup/unified");
    EXPECT_EQ(mountinfo("36 33 0:30 / /my\\040cgroups rw - cgroup2 none rw\n"), "/my cgroups");
    EXPECT_EQ(serviceErrorOf([&] {
                  mountinfo("36 33 0:31 / /sys/fs/cgroup/cpu rw - cgroup x rw\n");
              }).first,
              ErrorKind::NotSupported);
    ::unlink(path);
}

class ResolverTest : public LeakCheckedTest {
  protected:
    void SetUp() override {
        if (::geteuid() != 0) {
            GTEST_SKIP() << "making cgroups needs root";
        }
        if (cgroup2Root().empty()) {
            GTEST_SKIP() << "no cgroup2 hierarchy mounted";
        }
        if (!kernelFeatures().info || !kernelFeatures().pidfs) {
            GTEST_SKIP() << "needs pidfs and PIDFD_GET_INFO (kernel 6.13+)";
        }
        LeakCheckedTest::SetUp();
        base_ = "/nsfd-test-" + std::to_string(::getpid());
    }

    // Where the test's containers go: one tree per test process, left empty.
    std::string base_;
    Resolver resolver_;
};

// The net namespace id of `pid` (NS_GET_ID).
std::uint64_t netIdOf(pid_t pid) {
    return PidFd::open(pid).namespaceFd(NsType::Net).id();
}

TEST_F(ResolverTest, EachRuntimesLayoutResolvesToTheContainersMainProcess) {
    std::string id = makeContainerId();
    const std::string layouts[] = {
        base_ + "/system.slice/docker-" + id + ".scope",
        base_ + "/machine.slice/libpod-" + id + ".scope",
        base_ +
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1234.slice/"
            "cri-containerd-" +
            id + ".scope",
        base_ + "/kubepods.slice/crio-" + id + ".scope",
        base_ + "/docker/" + id,
        base_ + "/kubepods/besteffort/pod0b7d7c0a-4d3b-4b1a-9c9e-2f1f4e1a7b6c/" + id,
        base_ + "/libpod_parent/libpod-" + id,
    };
    for (const std::string& path : layouts) {
        SCOPED_TRACE(path);
        FakeContainer container(path, "inside");
        ASSERT_GT(container.childPid(), 0);
        PidFd found = resolver_.resolve(daemon::parseSelector("container:" + id.substr(0, 12)), {});
        EXPECT_EQ(found.pid(), container.pid())
            << "the main process, not its child " << container.childPid();
        EXPECT_EQ(found.id(), PidFd::open(container.pid()).id());
        EXPECT_EQ(found.namespaceFd(NsType::Net).id(), netIdOf(container.pid()));
        EXPECT_NE(netIdOf(container.pid()), NsFd::current(NsType::Net).id());
        EXPECT_EQ(resolver_.resolve(daemon::parseSelector("container:" + id), {}).pid(),
                  container.pid())
            << "the full id";
        EXPECT_EQ(resolver_.resolve(daemon::parseSelector("cgroup:" + path), {}).pid(),
                  container.pid());
    }
}

TEST_F(ResolverTest, APrefixOfTwoContainersIsAmbiguousAndALongerOneIsNot) {
    std::string shared = makeContainerId().substr(0, 12);
    std::string a = makeContainerId(shared + "0"), b = makeContainerId(shared + "1");
    FakeContainer first(base_ + "/system.slice/docker-" + a + ".scope", "a");
    FakeContainer second(base_ + "/docker/" + b, "b");
    auto [kind, message] = serviceErrorOf(
        [&] { resolver_.resolve(daemon::parseSelector("container:" + shared), {}); });
    EXPECT_EQ(kind, ErrorKind::InvalidArgs);
    for (const std::string& match : {a, b}) {
        EXPECT_NE(message.find(match.substr(0, 12)), std::string::npos)
            << "names both by their short ids: " << message;
        EXPECT_EQ(message.find(match.substr(0, 13)), std::string::npos) << message;
    }
    EXPECT_EQ(resolver_.resolve(daemon::parseSelector("container:" + b.substr(0, 13)), {}).pid(),
              second.pid());
    // A caller that may see only one of them is not told of the other.
    Resolver::Visible onlyFirst = [&](const PidFd& pidfd) { return pidfd.pid() == first.pid(); };
    EXPECT_EQ(resolver_.resolve(daemon::parseSelector("container:" + shared), onlyFirst).pid(),
              first.pid());
}

TEST_F(ResolverTest, NothingMatchingOrAnEmptyCgroupIsNoSuchProcess) {
    std::string id = makeContainerId();
    EXPECT_EQ(serviceErrorOf([&] {
                  resolver_.resolve(daemon::parseSelector("container:" + id), {});
              }).first,
              ErrorKind::NoSuchProcess);
    EXPECT_EQ(serviceErrorOf([&] {
                  resolver_.resolve(daemon::parseSelector("cgroup:" + base_ + "/nothing"), {});
              }).first,
              ErrorKind::NoSuchProcess);
    std::string path;
    {
        FakeContainer gone(base_ + "/system.slice/docker-" + id + ".scope", "gone");
        path = gone.path();
    }
    // Its cgroup left behind, empty, as a runtime may for a moment.
    std::string dir = cgroup2Root() + base_;
    ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
    ASSERT_EQ(::mkdir((dir + "/docker-" + id + ".scope").c_str(), 0755), 0);
    auto [kind, message] =
        serviceErrorOf([&] { resolver_.resolve(daemon::parseSelector("container:" + id), {}); });
    EXPECT_EQ(kind, ErrorKind::NoSuchProcess);
    EXPECT_EQ(message, "No such process: container:" + id)
        << "the same words as for a container that is not there";
    ::rmdir((dir + "/docker-" + id + ".scope").c_str());
    ::rmdir(dir.c_str());
}

TEST_F(ResolverTest, TheMainProcessIsTheOldestWhoseParentIsOutside) {
    std::string id = makeContainerId();
    FakeContainer container(base_ + "/system.slice/docker-" + id + ".scope", "main");
    // As `docker exec` does: a process started later from outside, moved in.
    std::string procs = cgroup2Root() + container.path() + "/cgroup.procs";
    Child exec = Child::spawn([&procs] {
        int fd = ::open(procs.c_str(), O_WRONLY | O_CLOEXEC);
        int r = fd >= 0 && ::write(fd, "0", 1) == 1 ? 0 : errno;
        ::close(fd);
        return r;
    });
    EXPECT_EQ(resolver_.mainProcessOf(container.path()).pid(), container.pid());
    exec.release(0);
    exec.reap();
}

// systemd's answers as a table: systemd is not PID 1 on the machines the unit
// tests run on (tests/system/run asks the real one).
class FixedUnits final : public daemon::UnitDirectory {
  public:
    std::optional<Unit> unit(const std::string& name) override {
        auto it = units.find(name);
        return it == units.end() ? std::nullopt : std::optional(it->second);
    }
    std::optional<Unit> machine(const std::string& name) override { return unit("m:" + name); }
    std::map<std::string, Unit> units;
};

TEST_F(ResolverTest, AUnitsMainPidCountsOnlyWhileItIsInTheUnitsCgroup) {
    EXPECT_EQ(serviceErrorOf([&] {
                  resolver_.resolve(daemon::parseSelector("unit:x.service"), {});
              }).first,
              ErrorKind::NotSupported)
        << "no systemd to ask";
    FixedUnits units;
    resolver_.setUnitDirectory(&units);
    FakeContainer service(base_ + "/system.slice/web.service", "web");
    Child elsewhere = Child::spawn();
    units.units["web.service"] = {service.pid(), service.path()};
    units.units["scope.scope"] = {0, service.path()};
    units.units["stale.service"] = {elsewhere.pid(), service.path()};  // a pid reused meanwhile
    units.units["m:vm"] = {service.pid(), service.path()};
    units.units["stopped.service"] = {0, ""};
    EXPECT_EQ(resolver_.resolve(daemon::parseSelector("unit:web.service"), {}).pid(),
              service.pid());
    EXPECT_EQ(resolver_.resolve(daemon::parseSelector("unit:scope.scope"), {}).pid(), service.pid())
        << "no MainPID: the main process of its cgroup";
    EXPECT_EQ(resolver_.resolve(daemon::parseSelector("machine:vm"), {}).pid(), service.pid());
    for (const char* selector :
         {"unit:stale.service", "unit:stopped.service", "unit:none.service", "machine:none"}) {
        EXPECT_EQ(
            serviceErrorOf([&] { resolver_.resolve(daemon::parseSelector(selector), {}); }).first,
            ErrorKind::NoSuchProcess)
            << selector;
    }
    resolver_.setUnitDirectory(nullptr);
    elsewhere.release(0);
    elsewhere.reap();
}

}  // namespace
}  // namespace nsfd::test

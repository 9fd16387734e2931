// SPDX-License-Identifier: LGPL-2.1-or-later
#include "nsfd/ns.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <set>
#include <string>

#include "child.hpp"
#include "nsfd/features.hpp"
#include "nsfd/pidfd.hpp"

namespace nsfd::test {
namespace {

class NsTest : public LeakCheckedTest {
  protected:
    void SetUp() override {
        LeakCheckedTest::SetUp();
        if (!kernelFeatures().namespaceId) {
            GTEST_SKIP() << "kernel lacks NS_GET_ID (6.12+)";
        }
    }
};

UniqueFd openPath(const std::string& path) {
    return UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
}

TEST(NsTypeTest, NamesRoundTrip) {
    const char* expected[] = {
        "cgroup", "ipc", "mnt", "net", "pid", "pid_for_children", "time", "time_for_children",
        "user",   "uts"};
    ASSERT_EQ(allNsTypes().size(), 10U);
    std::set<std::string_view> seen;
    for (std::size_t i = 0; i < allNsTypes().size(); ++i) {
        NsType type = allNsTypes()[i];
        EXPECT_EQ(toString(type), expected[i]);
        EXPECT_EQ(parseNsType(expected[i]), type);
        seen.insert(toString(type));
    }
    EXPECT_EQ(seen.size(), 10U);
}

TEST(NsTypeTest, RejectsUnknownNames) {
    for (const char* bad : {"", "Net", "NET", "network", "net ", "pid_for", "mount", "user\n"}) {
        EXPECT_EQ(parseNsType(bad), std::nullopt) << '"' << bad << '"';
    }
}

TEST(NsTypeTest, CloneFlags) {
    EXPECT_EQ(cloneFlag(NsType::Net), CLONE_NEWNET);
    EXPECT_EQ(cloneFlag(NsType::Mnt), CLONE_NEWNS);
    EXPECT_EQ(cloneFlag(NsType::PidForChildren), CLONE_NEWPID);
    EXPECT_EQ(cloneFlag(NsType::TimeForChildren), cloneFlag(NsType::Time));
}

TEST_F(NsTest, CurrentMatchesProc) {
    for (NsType type : allNsTypes()) {
        NsFd ns = NsFd::current(type);
        struct stat expected {};
        std::string path = "/proc/self/ns/" + std::string(toString(type));
        ASSERT_EQ(::stat(path.c_str(), &expected), 0);
        EXPECT_EQ(ns.type(), type);
        EXPECT_EQ(ns.inode(), expected.st_ino) << path;
        EXPECT_NE(ns.id(), 0U);
    }
}

TEST_F(NsTest, AdoptChecksTheKind) {
    NsFd uts = NsFd::adopt(openPath("/proc/self/ns/uts"));
    EXPECT_EQ(uts.type(), NsType::Uts);
    EXPECT_EQ(uts.id(), NsFd::current(NsType::Uts).id());

    NsFd children = NsFd::adopt(openPath("/proc/self/ns/pid_for_children"), NsType::PidForChildren);
    EXPECT_EQ(children.type(), NsType::PidForChildren);

    std::string message;
    EXPECT_EQ(errnoOf([] { NsFd::adopt(openPath("/proc/self/ns/uts"), NsType::Net); }, &message),
              EINVAL);
    EXPECT_NE(message.find("uts namespace, not net"), std::string::npos) << message;
}

TEST_F(NsTest, AdoptRejectsFdsThatAreNotNamespaces) {
    int pipeFds[2];
    ASSERT_EQ(::pipe2(pipeFds, O_CLOEXEC), 0);
    UniqueFd readEnd(pipeFds[0]);
    UniqueFd writeEnd(pipeFds[1]);
    EXPECT_EQ(errnoOf([&] { NsFd::adopt(std::move(readEnd)); }), EINVAL);
    EXPECT_EQ(errnoOf([] { NsFd::adopt(openPath("/dev/null")); }), EINVAL);
    EXPECT_EQ(errnoOf([] { NsFd::adopt(UniqueFd(::eventfd(0, EFD_CLOEXEC))); }), EINVAL);
    EXPECT_EQ(errnoOf([] { NsFd::adopt(UniqueFd(PidFd::self().release())); }), EINVAL);
    EXPECT_EQ(errnoOf([] { NsFd::adopt(UniqueFd()); }), EINVAL);
}

TEST_F(NsTest, OwnerAndOwningUserNamespace) {
    NsFd user = NsFd::current(NsType::User);
    EXPECT_EQ(user.ownerUid(), 0U);  // the initial user namespace belongs to root
    EXPECT_EQ(errnoOf([] { (void)NsFd::current(NsType::Net).ownerUid(); }), EINVAL);

    NsFd owner = NsFd::current(NsType::Net).owningUserNamespace();
    EXPECT_EQ(owner.type(), NsType::User);
    EXPECT_EQ(owner.id(), user.id());
}

TEST_F(NsTest, ParentOfANestedUserNamespace) {
    if (!kernelFeatures().namespaceIoctls) {
        GTEST_SKIP() << "kernel lacks PIDFD_GET_*_NAMESPACE (6.11+)";
    }
    // A child in a user namespace it made as uid 4242: the owner is 4242 and its parent is ours.
    Child child = Child::spawn([] {
        if (::setresgid(4242, 4242, 4242) < 0 || ::setresuid(4242, 4242, 4242) < 0 ||
            ::unshare(CLONE_NEWUSER) < 0) {
            return errno;
        }
        return 0;
    });
    NsFd nested = PidFd::open(child.pid()).userNamespace();
    NsFd ours = NsFd::current(NsType::User);
    EXPECT_NE(nested.id(), ours.id());
    EXPECT_EQ(nested.ownerUid(), 4242U);
    NsFd parent = nested.parent();
    EXPECT_EQ(parent.type(), NsType::User);
    EXPECT_EQ(parent.id(), ours.id());
    // Our own user namespace is the root we can see: no parent.
    EXPECT_EQ(errnoOf([&] { (void)ours.parent(); }), EPERM);
    EXPECT_EQ(errnoOf([] { (void)NsFd::current(NsType::Net).parent(); }), EINVAL);
    child.release(0);
    EXPECT_EQ(child.reap(), 0);
}

TEST_F(NsTest, ReleaseHandsOverTheFd) {
    NsFd ns = NsFd::current(NsType::Net);
    int raw = ns.get();
    UniqueFd fd(ns.release());
    EXPECT_EQ(fd.get(), raw);
    EXPECT_EQ(ns.get(), -1);
}

}  // namespace
}  // namespace nsfd::test

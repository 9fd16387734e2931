// SPDX-License-Identifier: LGPL-2.1-or-later
#include "nsfd/unique_fd.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <type_traits>

#include "child.hpp"

namespace nsfd::test {
namespace {

static_assert(!std::is_copy_constructible_v<UniqueFd>);
static_assert(!std::is_copy_assignable_v<UniqueFd>);
static_assert(std::is_nothrow_move_constructible_v<UniqueFd>);
static_assert(!std::is_convertible_v<UniqueFd, int>);
static_assert(!std::is_convertible_v<UniqueFd, bool>);
static_assert(!std::is_convertible_v<int, UniqueFd>, "the int constructor must be explicit");

bool isOpen(int fd) {
    return ::fcntl(fd, F_GETFD) >= 0;
}

class UniqueFdTest : public LeakCheckedTest {};

TEST_F(UniqueFdTest, ClosesOnDestruction) {
    int raw = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    ASSERT_GE(raw, 0);
    {
        UniqueFd fd(raw);
        EXPECT_EQ(fd.get(), raw);
        EXPECT_TRUE(fd.ok());
    }
    EXPECT_FALSE(isOpen(raw));
}

TEST_F(UniqueFdTest, MoveTransfersOwnership) {
    UniqueFd a(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    int raw = a.get();
    UniqueFd b(std::move(a));
    // The moved-from state is the contract.
    EXPECT_FALSE(a.ok());  // NOLINT(bugprone-use-after-move,clang-analyzer-cplusplus.Move)
    EXPECT_EQ(b.get(), raw);
    UniqueFd c;
    c = std::move(b);
    EXPECT_EQ(c.get(), raw);
    EXPECT_TRUE(isOpen(raw));
}

TEST_F(UniqueFdTest, ReleaseGivesUpOwnership) {
    UniqueFd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    int raw = fd.release();
    EXPECT_FALSE(fd.ok());
    EXPECT_TRUE(isOpen(raw));
    ::close(raw);
}

TEST_F(UniqueFdTest, ResetClosesAndPreservesErrno) {
    int first = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    int second = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    UniqueFd fd(first);
    errno = ENOSPC;
    fd.reset(second);
    EXPECT_EQ(errno, ENOSPC);
    EXPECT_FALSE(isOpen(first));
    EXPECT_EQ(fd.get(), second);
    fd.reset();
    EXPECT_FALSE(isOpen(second));
    EXPECT_FALSE(fd.ok());
}

TEST_F(UniqueFdTest, DuplicateIsCloexecAndIndependent) {
    UniqueFd fd(::open("/dev/null", O_RDONLY));  // deliberately without CLOEXEC
    UniqueFd copy = fd.duplicate();
    EXPECT_NE(copy.get(), fd.get());
    EXPECT_GE(copy.get(), 3);
    EXPECT_EQ(::fcntl(copy.get(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    fd.reset();
    EXPECT_TRUE(isOpen(copy.get()));
}

TEST_F(UniqueFdTest, DuplicateOfClosedFdThrowsEbadf) {
    UniqueFd none;
    EXPECT_EQ(errnoOf([&] { (void)none.duplicate(); }), EBADF);
}

}  // namespace

// A fixture that skips before the leak check has counted (test users missing,
// say) must come out skipped, not failed for an fd it never opened.
class SkipsBeforeTheLeakCheck : public LeakCheckedTest {
  protected:
    void SetUp() override { GTEST_SKIP() << "skipped before LeakCheckedTest::SetUp, on purpose"; }
};

TEST_F(SkipsBeforeTheLeakCheck, IsSkippedNotFailed) {
    ADD_FAILURE() << "a skipped test's body ran";
}

}  // namespace nsfd::test

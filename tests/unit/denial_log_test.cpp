// SPDX-License-Identifier: LGPL-2.1-or-later
// The denial log's bound: a few lines per uid per window, then one line that
// counts the rest (issue 22). Times are given, not waited for.
#include <gtest/gtest.h>

#include <algorithm>

#include "core/denial_log.hpp"

namespace nsfd::daemon {
namespace {

using namespace std::chrono_literals;

TEST(DenialLogTest, AFloodOfOneUidWritesTenLinesThenOneThatCountsTheRest) {
    DenialLog log;
    auto t0 = DenialLog::Clock::time_point() + 1h;
    std::size_t written = 0;
    for (int i = 0; i < 34'010; ++i) {
        DenialLog::Admission a = log.admit(999, t0 + std::chrono::microseconds(i * 200));
        written += a.write ? 1 : 0;
        EXPECT_TRUE(a.summaries.empty());
    }
    EXPECT_EQ(written, 10U);
    // Another uid is not held back by the first one's flood.
    EXPECT_TRUE(log.admit(1000, t0 + 7s).write);
    DenialLog::Admission next = log.admit(999, t0 + 10s);
    EXPECT_TRUE(next.write) << "a new window";
    ASSERT_EQ(next.summaries.size(), 1U);
    EXPECT_EQ(next.summaries[0], "... and 34,000 more denials of uid 999 in the last 10 s");
}

TEST(DenialLogTest, FlushCountsWhatWasLeftOutOfWindowsNotEnded) {
    DenialLog log(DenialLog::Limits{10s, 2, 4096});
    auto t0 = DenialLog::Clock::time_point() + 1h;
    for (int i = 0; i < 3; ++i) {
        log.admit(5, t0 + 1s);
    }
    std::vector<std::string> lines = log.flush(t0 + 4s);
    ASSERT_EQ(lines.size(), 1U);
    EXPECT_EQ(lines[0], "... and 1 more denial of uid 5 in the last 3 s");
    EXPECT_TRUE(log.flush(t0 + 5s).empty());
}

TEST(DenialLogTest, ManyUidsAtOnceKeepTheTableBoundedAndAreCountedToo) {
    DenialLog log(DenialLog::Limits{10s, 1, 100});
    auto t0 = DenialLog::Clock::time_point() + 1h;
    std::size_t written = 0;
    for (uid_t uid = 100000; uid < 100000 + 1000; ++uid) {
        written += log.admit(uid, t0).write ? 1 : 0;
    }
    EXPECT_EQ(written, 101U) << "one line for each of the first 100 uids, one for the others";
    // Once the windows have ended, the table is summed up and starts again.
    DenialLog::Admission later = log.admit(1, t0 + 11s);
    EXPECT_TRUE(later.write);
    std::string all;
    for (const std::string& line : later.summaries) {
        all += line + "\n";
    }
    EXPECT_NE(all.find("... and 899 more denials of other uids in the last 10 s\n"),
              std::string::npos)
        << all;
}

// The denials of a user's container count against the user's lines (the
// caller passes Caller::account()), and the count says whose they were.
TEST(DenialLogTest, AnAccountsSummaryNamesTheUidsOfItsUserNamespaces) {
    DenialLog log(DenialLog::Limits{10s, 2, 4096});
    auto t0 = DenialLog::Clock::time_point() + 1h;
    EXPECT_TRUE(log.admit(1000, t0).write);
    EXPECT_TRUE(log.admit(1000, t0, /*ofItsUserNamespace=*/true).write);
    EXPECT_FALSE(log.admit(1000, t0, true).write) << "the account's two lines are taken";
    EXPECT_FALSE(log.admit(1000, t0).write);
    std::vector<std::string> lines = log.flush(t0 + 5s);
    ASSERT_EQ(lines.size(), 1U);
    EXPECT_EQ(lines[0],
              "... and 2 more denials of uid 1000 and the uids of its user namespaces in the "
              "last 5 s");
}

TEST(DenialLogTest, ThousandsAreSeparated) {
    EXPECT_EQ(withThousands(0), "0");
    EXPECT_EQ(withThousands(999), "999");
    EXPECT_EQ(withThousands(1000), "1,000");
    EXPECT_EQ(withThousands(34000), "34,000");
    EXPECT_EQ(withThousands(1234567), "1,234,567");
}

}  // namespace
}  // namespace nsfd::daemon

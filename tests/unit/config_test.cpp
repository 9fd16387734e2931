// SPDX-License-Identifier: LGPL-2.1-or-later
// nsfdd.conf: each value has one spelling; any other is refused, saying what was expected.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include "core/config.hpp"
#include "nsfd/socket_names.hpp"

namespace nsfd::daemon {
namespace {

// The message of the ConfigError parsing `text` throws, or "" if it parses.
std::string refusalOf(const std::string& text) {
    try {
        (void)parseConfig(text, "test.conf");
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "";
}

TEST(ConfigTest, AnIntegerHasOneSpelling) {
    for (const char* key : {"tracked-per-user", "retention-seconds"}) {
        std::string head = std::string("[limits]\n") + key + " = ";
        EXPECT_EQ(refusalOf(head + "60\n"), "") << key;
        EXPECT_EQ(refusalOf(head + "0\n"), "") << key;
        EXPECT_EQ(refusalOf(head + "60 # a comment\n"), "") << key;
        // TOML reads each of these as 60 (or 0): one meaning, many spellings.
        for (const char* other : {"0x3c", "0o74", "0b111100", "+60", "6_0", "+0", "-0"}) {
            std::string refusal = refusalOf(head + other + "\n");
            EXPECT_NE(
                refusal.find("test.conf:2: " + std::string(key) + " must be an integer from 0 to"),
                std::string::npos)
                << key << " = " << other << ": " << refusal;
        }
        EXPECT_NE(refusalOf(head + "60.0\n"), "") << key;
        EXPECT_NE(refusalOf(head + "\"60\"\n"), "") << key;
    }
    Config config = parseConfig("[limits]\ntracked-per-user = 20\nretention-seconds = 5\n", "x");
    EXPECT_EQ(config.trackedPerUser, 20U);
    EXPECT_EQ(config.retention, std::chrono::seconds(5));
}

TEST(ConfigTest, ANamespaceListNamesEachTypeOnceOrAllAlone) {
    std::string head = "[[grant]]\nuser = \"root\"\nnamespaces = ";
    EXPECT_EQ(refusalOf(head + "[\"net\", \"uts\"]\n"), "");
    EXPECT_EQ(refusalOf(head + "[\"all\"]\n"), "");
    EXPECT_EQ(parseConfig(head + "[\"all\"]\n", "x").grants.at(0).namespaces.size(),
              allNsTypes().size());
    EXPECT_NE(refusalOf(head + "[\"net\", \"net\"]\n").find("namespace type 'net' listed twice"),
              std::string::npos);
    EXPECT_NE(refusalOf(head + "[\"all\", \"net\"]\n").find("\"all\" stands alone"),
              std::string::npos);
    EXPECT_NE(refusalOf(head + "[\"NET\"]\n").find("unknown namespace type 'NET'"),
              std::string::npos);
    EXPECT_NE(refusalOf(head + "[\"net \"]\n").find("unknown namespace type 'net '"),
              std::string::npos);
    EXPECT_NE(refusalOf(head + "[\"mount\"]\n").find("unknown namespace type 'mount'"),
              std::string::npos);
}

TEST(ConfigTest, ASocketListNamesEachFamilyOnceByItsAfNameOrAllAlone) {
    std::string head = "[[grant]]\nuser = \"root\"\nsockets = ";
    EXPECT_EQ(parseConfig(head + "[\"inet\", \"netlink\"]\n", "x").grants.at(0).sockets,
              (std::set<int>{AF_INET, AF_NETLINK}));
    EXPECT_EQ(parseConfig(head + "[\"all\"]\n", "x").grants.at(0).sockets.size(),
              std::size(kSocketFamilies));
    EXPECT_TRUE(parseConfig(head + "[]\n", "x").grants.at(0).sockets.empty());
    EXPECT_NE(refusalOf(head + "[\"inet\", \"inet\"]\n").find("'inet' listed twice"),
              std::string::npos);
    EXPECT_NE(refusalOf(head + "[\"all\", \"inet\"]\n").find("stands alone"), std::string::npos);
    for (const char* wrong : {"[\"AF_INET\"]", "[\"INET\"]", "[\"local\"]", "[2]", "\"inet\""}) {
        EXPECT_NE(refusalOf(head + wrong + "\n"), "") << wrong;
    }
}

TEST(ConfigTest, AnEnterListNamesNetUtsAndIpcOnlyEachOnce) {
    std::string head = "[[grant]]\nuser = \"root\"\nenter = ";
    EXPECT_EQ(parseConfig(head + "[\"net\", \"ipc\"]\n", "x").grants.at(0).enter,
              (std::set<NsType>{NsType::Net, NsType::Ipc}));
    EXPECT_TRUE(parseConfig(head + "[]\n", "x").grants.at(0).enter.empty());
    EXPECT_NE(refusalOf(head + "[\"net\", \"net\"]\n").find("'net' listed twice"),
              std::string::npos);
    for (const char* type : {"mnt", "pid", "user", "cgroup", "time", "all"}) {
        EXPECT_NE(refusalOf(head + "[\"" + type + "\"]\n").find("enter takes net, uts and ipc"),
                  std::string::npos)
            << type;
    }
    EXPECT_NE(refusalOf(head + "\"net\"\n").find("enter must be a list"), std::string::npos);
}

TEST(ConfigTest, AGrantNamesItsUserOrGroupByName) {
    EXPECT_EQ(refusalOf("[[grant]]\nuser = \"root\"\ninfo = true\n"), "");
    EXPECT_NE(refusalOf("[[grant]]\nuser = 0\ninfo = true\n")
                  .find("test.conf:2: user must be a user name, as a string"),
              std::string::npos);
    EXPECT_NE(refusalOf("[[grant]]\ngroup = 0\ninfo = true\n")
                  .find("test.conf:2: group must be a group name, as a string"),
              std::string::npos);
    EXPECT_NE(refusalOf("[[grant]]\nuser = \"0\"\n").find("unknown user '0'"), std::string::npos);
    EXPECT_NE(
        refusalOf("[[grant]]\nuser = \"root\"\ninfo = 1\n").find("info must be true or false"),
        std::string::npos);
}

}  // namespace
TEST(ConfigTest, AGrantIsForSandboxesOnlyWhenItSaysSo) {
    Config plain = parseConfig("[[grant]]\nuser = \"root\"\ninfo = true\n", "t.conf");
    ASSERT_EQ(plain.grants.size(), 1U);
    EXPECT_FALSE(plain.grants[0].sandboxed);
    Config marked =
        parseConfig("[[grant]]\nuser = \"root\"\ninfo = true\nsandboxed = true\n", "t.conf");
    EXPECT_TRUE(marked.grants[0].sandboxed);
    EXPECT_THROW(parseConfig("[[grant]]\nuser = \"root\"\nsandboxed = \"yes\"\n", "t.conf"),
                 ConfigError);
    EXPECT_THROW(parseConfig("[[grant]]\nuser = \"root\"\nsandboxed = 1\n", "t.conf"), ConfigError);
}

}  // namespace nsfd::daemon

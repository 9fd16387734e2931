// SPDX-License-Identifier: LGPL-2.1-or-later
// A pid means what it means to the one who wrote it: a caller in another pid
// namespace than nsfdd's (unshare --pid, as flatpak apps and containers that
// mount the host's bus socket are) never acts on, or learns the pid of, a
// process it did not mean. nsfdctl and libnsfd-client pass pidfds opened in
// the caller's namespace; raw pid arguments from such a caller are refused
// (ForeignPidNamespace); pids shown to it are 0.
#include <sstream>

#include "fixture.hpp"

namespace nsfd::test {
namespace {

class PidNamespaceTest : public DaemonTest {
  protected:
    // Runs `script` with sh as root in a new pid namespace (and mount
    // namespace, with its own /proc): {wait status, stdout and stderr}.
    std::pair<int, std::string> inNewPidNamespace(const std::string& script) {
        return forkAndRead([&](int fd) {
            ::dup2(fd, STDOUT_FILENO);
            ::dup2(fd, STDERR_FILENO);
            ::setenv("NSFDCTL", NSFD_TEST_NSFDCTL, 1);
            ::execlp("unshare", "unshare", "--pid", "--fork", "--mount-proc", "sh", "-c",
                     script.c_str(), nullptr);
            ::_exit(127);
        });
    }
};

TEST_F(PidNamespaceTest, ACallerInAnotherPidNamespaceActsOnlyOnTheProcessItMeant) {
    // Inside, pid 2 is our sleep; outside, pid 2 is kthreadd. The sleep's pidfs
    // id, from a pidfd opened inside, tells which process nsfd acted on.
    auto [status, out] = inNewPidNamespace(R"sh(
sleep 100 & p=$!
id=$(python3 -c 'import os,sys; print(os.fstat(os.pidfd_open(int(sys.argv[1]))).st_ino)' $p)
echo "pid=$p"
echo "id=$id"
echo "track=$($NSFDCTL track $p)"
echo "info=$($NSFDCTL --json info $p)"
echo "raw=$(busctl call org.nsfd1 /org/nsfd1 org.nsfd1.Manager GetProcessInfo u $p 2>&1)"
echo "list=$(busctl call org.nsfd1 /org/nsfd1 org.nsfd1.Manager ListProcesses 2>&1)"
kill $p
)sh");
    ASSERT_EQ(status, 0) << out;
    // The value of the line "key=value".
    auto field = [&](const std::string& key) {
        std::istringstream lines(out);
        for (std::string line; std::getline(lines, line);) {
            if (line.rfind(key + "=", 0) == 0) {
                return line.substr(key.size() + 1);
            }
        }
        return std::string();
    };
    std::string pid = field("pid");
    std::string id = field("id");
    ASSERT_FALSE(id.empty()) << out;
    EXPECT_NE(field("track").find("/org/nsfd1/process/" + id), std::string::npos)
        << "tracked the process it meant:\n"
        << out;
    EXPECT_NE(field("info").find("\"id\":" + id), std::string::npos) << out;
    EXPECT_NE(field("info").find("\"pid\":" + pid), std::string::npos)
        << "its own pid, as it wrote it:\n"
        << out;
    EXPECT_NE(field("raw").find("pass a pidfd"), std::string::npos)
        << "a raw pid from another pid namespace is refused:\n"
        << out;
    EXPECT_NE(field("list").find("a(uto) 1 0 " + id), std::string::npos)
        << "it is shown no pid of nsfdd's namespace:\n"
        << out;
}

}  // namespace
}  // namespace nsfd::test

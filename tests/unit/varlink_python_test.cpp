// SPDX-License-Identifier: LGPL-2.1-or-later
// A client that is not nsfd's C++ code: tests/varlink/varlink_client.py, on
// Python's standard library, against the server on a real socket.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sstream>

#include "varlink/manager_idl.hpp"
#include "varlink_test_util.hpp"

extern char** environ;

namespace nsfd::test {
namespace {

using varlink::CallPtr;

struct ClientRun {
    int status = -1;
    std::vector<Json> lines;
};

class VarlinkPythonTest : public VarlinkServerFixture {
  protected:
    void SetUp() override {
        VarlinkServerFixture::SetUp();
        server_->addInterface(kTestIdl);
        server_->addMethod(
            "org.example.Test.Echo",
            [](const CallPtr& call) {
                std::vector<UniqueFd> fds;
                for (std::size_t i = 0; i < call->fdCount(); ++i) {
                    fds.push_back(call->takeFd(i));
                }
                call->reply({{"echo", call->parameters()}, {"fileDescriptor", 0}}, std::move(fds));
            },
            varlink::kTakesFds);
        server_->addMethod("org.example.Test.Count", [](const CallPtr& call) {
            const Json* given = call->parameters().find("to");
            int to = given != nullptr ? given->get<int>() : 3;
            for (int i = 1; i < to; ++i) {
                call->notify({{"n", i}});
            }
            call->reply({{"n", to}});
        });
    }

    ClientRun runClient(const std::vector<std::string>& arguments) {
        return runPython(NSFD_VARLINK_CLIENT_PY, arguments);
    }

    // Runs a script with these arguments while the loop serves it.
    ClientRun runPython(const std::string& script, const std::vector<std::string>& arguments) {
        Pipe out;
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, out.write.get(), STDOUT_FILENO);
        std::vector<std::string> words = {"python3", script};
        words.insert(words.end(), arguments.begin(), arguments.end());
        std::vector<char*> argv;
        argv.reserve(words.size() + 1);
        for (std::string& word : words) {
            argv.push_back(word.data());
        }
        argv.push_back(nullptr);
        pid_t pid = -1;
        int r = ::posix_spawnp(&pid, "python3", &actions, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        ClientRun run;
        if (r != 0) {
            ADD_FAILURE() << "posix_spawnp: " << r;
            return run;
        }
        out.write.reset();
        bool exited = turnUntil([&] { return ::waitpid(pid, &run.status, WNOHANG) == pid; },
                                std::chrono::seconds(20));
        if (!exited) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &run.status, 0);
            ADD_FAILURE() << "the client did not finish";
        }
        std::string text;
        char chunk[4096];
        for (ssize_t n; (n = ::read(out.read.get(), chunk, sizeof(chunk))) > 0;) {
            text.append(chunk, static_cast<std::size_t>(n));
        }
        std::istringstream lines(text);
        for (std::string line; std::getline(lines, line);) {
            run.lines.push_back(Json::parse(line, nullptr, false));
        }
        return run;
    }
};

TEST_F(VarlinkPythonTest, GetInfo) {
    ClientRun run = runClient({path_, "org.varlink.service.GetInfo"});
    EXPECT_EQ(run.status, 0);
    ASSERT_EQ(run.lines.size(), 1u);
    EXPECT_EQ(run.lines[0]["parameters"]["vendor"], "nsfd");
}

TEST_F(VarlinkPythonTest, SendsAndReceivesFds) {
    ClientRun run =
        runClient({path_, "org.example.Test.Echo", R"({"pid": 1})", "--fd", "/dev/null"});
    EXPECT_EQ(run.status, 0);
    ASSERT_EQ(run.lines.size(), 1u);
    EXPECT_EQ(run.lines[0]["parameters"]["echo"], (Json{{"pid", 1}}));
    EXPECT_EQ(run.lines[0]["fds"], (Json{"/dev/null"}));
}

TEST_F(VarlinkPythonTest, Streams) {
    ClientRun run = runClient({path_, "org.example.Test.Count", R"({"to": 3})", "--more"});
    EXPECT_EQ(run.status, 0);
    ASSERT_EQ(run.lines.size(), 3u);
    EXPECT_EQ(run.lines[0]["continues"], true);
    EXPECT_EQ(run.lines[2]["parameters"]["n"], 3);
    EXPECT_FALSE(run.lines[2].contains("continues"));
}

TEST_F(VarlinkPythonTest, ErrorsExitWithOne) {
    ClientRun run = runClient({path_, "org.example.Test.Count"});
    EXPECT_EQ(WEXITSTATUS(run.status), 1);
    ASSERT_EQ(run.lines.size(), 1u);
    EXPECT_EQ(run.lines[0]["error"], "org.varlink.service.ExpectedMore");
}

// Both descriptions the server hands out parse with the grammar of varlink.org,
// every type they use declared and every declaration commented.
TEST_F(VarlinkPythonTest, InterfaceDescriptionsAreValidIdl) {
    server_->addInterface(std::string(varlink::kManagerIdl));
    ClientRun run = runPython(NSFD_VARLINK_IDL_CHECK_PY,
                              {"--socket", path_, "org.nsfd1.Manager", "org.varlink.service"});
    EXPECT_EQ(run.status, 0);
}

}  // namespace
}  // namespace nsfd::test

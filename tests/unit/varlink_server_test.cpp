// SPDX-License-Identifier: LGPL-2.1-or-later
// The Varlink server on a real loop and real sockets: dispatch, built-in
// methods, fds both ways, peer identity, order of replies, deferred replies.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "varlink/errors.hpp"
#include "varlink/manager_idl.hpp"
#include "varlink_test_util.hpp"

namespace nsfd::test {
namespace {

namespace error = wire::error;
using varlink::CallPtr;

class VarlinkServerTest : public VarlinkServerFixture {
  protected:
    void SetUp() override {
        VarlinkServerFixture::SetUp();
        server_->addInterface(std::string(varlink::kManagerIdl));
        server_->addInterface(kTestIdl);
    }
};

TEST_F(VarlinkServerTest, GetInfoListsTheInterfaces) {
    TestClient client(*this);
    client.call("org.varlink.service.GetInfo");
    std::optional<Reply> reply = client.read();
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->parameters().at("vendor"), "nsfd");
    EXPECT_EQ(reply->parameters().at("product"), "nsfd test");
    EXPECT_EQ(reply->parameters().at("version"), "0.1");
    EXPECT_EQ(reply->parameters().at("url"), "https://example.org/nsfd");
    EXPECT_EQ(reply->parameters().at("interfaces"),
              (Json{"org.example.Test", "org.nsfd1.Manager", "org.varlink.service"}));
    EXPECT_FALSE(reply->message.contains("continues"));
}

TEST_F(VarlinkServerTest, GetInterfaceDescription) {
    TestClient client(*this);
    client.call("org.varlink.service.GetInterfaceDescription",
                {{"interface", "org.nsfd1.Manager"}});
    std::optional<Reply> reply = client.read();
    ASSERT_TRUE(reply);
    std::string idl = reply->parameters().at("description");
    EXPECT_EQ(idl, varlink::kManagerIdl);
    EXPECT_NE(idl.find("interface org.nsfd1.Manager\n"), std::string::npos);

    client.call("org.varlink.service.GetInterfaceDescription",
                {{"interface", "org.varlink.service"}});
    reply = client.read();
    ASSERT_TRUE(reply);
    EXPECT_NE(std::string(reply->parameters().at("description")).find("method GetInfo()"),
              std::string::npos);

    client.call("org.varlink.service.GetInterfaceDescription", {{"interface", "com.example.No"}});
    reply = client.read();
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->error(), error::kInterfaceNotFound);
    EXPECT_EQ(reply->parameters(), (Json{{"interface", "com.example.No"}}));

    client.call("org.varlink.service.GetInterfaceDescription");
    reply = client.read();
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->error(), error::kInvalidParameter);
    EXPECT_EQ(reply->parameters(), (Json{{"parameter", "interface"}}));
}

// The names other tools depend on are in the description.
TEST_F(VarlinkServerTest, ManagerIdlDocumentsTheContract) {
    std::string idl(varlink::kManagerIdl);
    for (const char* word :
         {"method GetNamespace(",    "method GetNamespaces(",   "method TrackProcess(",
          "method UntrackProcess(",  "method GetProcess(",      "method ListProcesses(",
          "method GetProcessInfo(",  "method GetNamespaceIds(", "method GetPidFd(",
          "method SendSignal(",      "method GetFd(",           "method WatchExits(",
          "fileDescriptor: int",     "namespaces: [string]int", "waitStatus: ?int",
          "types: ?[]NamespaceType", "error NoSuchProcess",     "error ProcessExited",
          "error NotTracked",        "error NotSupported",      "error LimitExceeded",
          "error AccessDenied",      "error InvalidArgument"}) {
        EXPECT_NE(idl.find(word), std::string::npos) << word;
    }
    // Every declaration has a comment above it.
    std::istringstream lines(idl);
    std::string line, previous;
    while (std::getline(lines, line)) {
        if (line.rfind("method ", 0) == 0 || line.rfind("error ", 0) == 0 ||
            line.rfind("type ", 0) == 0) {
            EXPECT_EQ(previous.rfind('#', 0), 0u) << "undocumented: " << line;
        }
        previous = line;
    }
}

TEST_F(VarlinkServerTest, UnknownMethodsAndInterfaces) {
    TestClient client(*this);
    client.call("org.nsfd1.Manager.NoSuchMethod");
    std::optional<Reply> reply = client.read();
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->error(), error::kMethodNotFound);
    EXPECT_EQ(reply->parameters(), (Json{{"method", "org.nsfd1.Manager.NoSuchMethod"}}));
    client.call("com.example.Nothing.Here");
    reply = client.read();
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->error(), error::kInterfaceNotFound);
    EXPECT_EQ(reply->parameters(), (Json{{"interface", "com.example.Nothing"}}));
    client.call("org.varlink.service.Nope");
    reply = client.read();
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->error(), error::kMethodNotFound);
}

TEST_F(VarlinkServerTest, FdsTravelBothWays) {
    // Sends back each fd it got, in reverse order, with indices in the reply.
    server_->addMethod(
        "org.example.Test.Reverse",
        [](const CallPtr& call) {
            std::vector<UniqueFd> fds;
            Json indices = Json::array();
            for (std::size_t i = call->fdCount(); i-- > 0;) {
                indices.push_back(fds.size());
                fds.push_back(call->takeFd(i));
            }
            call->reply({{"fds", indices}}, std::move(fds));
        },
        varlink::kTakesFds);
    TestClient client(*this);
    Pipe a, b;
    client.call("org.example.Test.Reverse", Json::object(), {a.read.get(), b.write.get()});
    std::optional<Reply> reply = client.read();
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->parameters().at("fds"), (Json{0, 1}));
    ASSERT_EQ(reply->fds.size(), 2u);
    EXPECT_EQ(inodeOf(reply->fds[0].get()), inodeOf(b.write.get()));
    EXPECT_EQ(inodeOf(reply->fds[1].get()), inodeOf(a.read.get()));
    EXPECT_EQ(::fcntl(reply->fds[0].get(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    // A reply with fds between two without, none read yet: each keeps its own,
    // as the server holds the one with fds until the first is read (the calls
    // go one read each: sd-varlink's rule would give a glued call's fds to
    // the call in front).
    client.call("org.varlink.service.GetInfo");
    ASSERT_TRUE(client.awaitRead());
    client.call("org.example.Test.Reverse", Json::object(), {a.write.get()});
    ASSERT_TRUE(client.awaitRead());
    client.call("org.varlink.service.GetInfo");
    ASSERT_TRUE(client.awaitRead());
    for (int i = 0; i < 5; ++i) {
        turn(std::chrono::milliseconds(4));  // the server writes what it may meanwhile
    }
    std::optional<Reply> first = client.read();
    std::optional<Reply> second = client.read();
    std::optional<Reply> third = client.read();
    ASSERT_TRUE(first && second && third);
    EXPECT_TRUE(first->fds.empty());
    ASSERT_EQ(second->fds.size(), 1u);
    EXPECT_EQ(inodeOf(second->fds[0].get()), inodeOf(a.write.get()));
    EXPECT_TRUE(third->fds.empty());
}

TEST_F(VarlinkServerTest, FdsOfACallThatTakesNoneAreClosed) {
    std::size_t seen = 99;
    server_->addMethod("org.example.Test.NoFds", [&](const CallPtr& call) {
        seen = call->fdCount();
        call->reply();
    });
    TestClient client(*this);
    Pipe pipe;
    client.call("org.example.Test.NoFds", Json::object(), {pipe.write.get()});
    ASSERT_TRUE(client.read());
    EXPECT_EQ(seen, 0u);
    // Ours is the last write end: the pipe reads end of file only if the server
    // closed the copy it received.
    pipe.write.reset();
    char byte;
    EXPECT_EQ(::read(pipe.read.get(), &byte, 1), 0);

    // The built-in methods take none either.
    Pipe other;
    client.call("org.varlink.service.GetInfo", Json::object(), {other.write.get()});
    ASSERT_TRUE(client.read());
    other.write.reset();
    EXPECT_EQ(::read(other.read.get(), &byte, 1), 0);
}

TEST_F(VarlinkServerTest, PeerIdentityComesFromTheSocket) {
    std::optional<varlink::Peer> peer;
    int pidfdFlags = -1;
    std::string pidfdOwner;
    server_->addMethod("org.example.Test.WhoAmI", [&](const CallPtr& call) {
        const varlink::Peer& p = call->peer();
        peer = varlink::Peer{p.uid, p.gid, p.pid, p.groups, std::nullopt, p.uid};
        if (p.pidfd) {
            pidfdFlags = ::fcntl(p.pidfd->get(), F_GETFD);
            std::ifstream fdinfo("/proc/self/fdinfo/" + std::to_string(p.pidfd->get()));
            std::string line;
            while (std::getline(fdinfo, line)) {
                if (line.rfind("Pid:", 0) == 0) {
                    pidfdOwner = line.substr(4);
                }
            }
        }
        call->reply();
    });
    TestClient client(*this);
    client.call("org.example.Test.WhoAmI");
    ASSERT_TRUE(client.read());
    ASSERT_TRUE(peer);
    EXPECT_EQ(peer->uid, ::getuid());
    EXPECT_EQ(peer->gid, ::getgid());
    EXPECT_EQ(peer->pid, ::getpid());
    std::vector<gid_t> groups(static_cast<std::size_t>(::getgroups(0, nullptr)));
    ::getgroups(static_cast<int>(groups.size()), groups.data());
    EXPECT_EQ(peer->groups.size(), groups.size());
    // SO_PEERPIDFD: kernel 6.5+ (this machine has 6.18).
    EXPECT_EQ(pidfdFlags, FD_CLOEXEC);
    EXPECT_NE(pidfdOwner.find(std::to_string(::getpid())), std::string::npos) << pidfdOwner;
}

TEST_F(VarlinkServerTest, RepliesLeaveInCallOrder) {
    std::vector<CallPtr> later;
    server_->addMethod("org.example.Test.Later",
                       [&](const CallPtr& call) { later.push_back(call); });
    server_->addMethod("org.example.Test.Now", [](const CallPtr& call) {
        call->reply({{"n", call->parameters().at("n")}});
    });
    TestClient client(*this);
    client.call("org.example.Test.Later", {{"n", 1}});
    client.call("org.example.Test.Now", {{"n", 2}});
    client.call("org.example.Test.Later", {{"n", 3}});
    client.call("org.example.Test.Now", {{"n", 4}});
    ASSERT_TRUE(turnUntil([&] { return later.size() == 2; }));
    // Call 2 is answered, but call 1 is not: nothing may leave yet.
    EXPECT_TRUE(client.silentFor(std::chrono::milliseconds(50)));
    later[1]->reply({{"n", 3}});
    EXPECT_TRUE(client.silentFor(std::chrono::milliseconds(50)));
    EXPECT_TRUE(later[0]->reply({{"n", 1}}));
    for (int n = 1; n <= 4; ++n) {
        std::optional<Reply> reply = client.read();
        ASSERT_TRUE(reply);
        EXPECT_EQ(reply->parameters().at("n"), n);
    }
    EXPECT_FALSE(later[0]->reply({{"n", 1}})) << "a second final reply";
}

TEST_F(VarlinkServerTest, StreamsWithMore) {
    CallPtr stream;
    server_->addMethod("org.example.Test.Watch", [&](const CallPtr& call) { stream = call; });
    server_->addMethod("org.example.Test.Now", [](const CallPtr& call) { call->reply(); });
    TestClient client(*this);
    client.call("org.example.Test.Watch");
    std::optional<Reply> reply = client.read();
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->error(), error::kExpectedMore);

    client.call("org.example.Test.Watch", Json::object(), {}, true);
    client.call("org.example.Test.Now");
    ASSERT_TRUE(turnUntil([&] { return stream != nullptr; }));
    Pipe pipe;
    std::vector<UniqueFd> fds;
    fds.push_back(pipe.read.duplicate());
    EXPECT_TRUE(stream->notify({{"id", 1}, {"pid", 10}, {"waitStatus", 0}}, std::move(fds)));
    EXPECT_TRUE(stream->notify({{"id", 2}, {"pid", 11}, {"waitStatus", 9}}));
    EXPECT_TRUE(stream->reply({{"id", 3}, {"pid", 12}, {"waitStatus", 256}}));
    reply = client.read();
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->message.value("continues", false), true);
    EXPECT_EQ(reply->parameters().at("id"), 1);
    ASSERT_EQ(reply->fds.size(), 1u);
    EXPECT_EQ(inodeOf(reply->fds[0].get()), inodeOf(pipe.read.get()));
    reply = client.read();
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->message.value("continues", false), true);
    EXPECT_TRUE(reply->fds.empty());
    reply = client.read();
    ASSERT_TRUE(reply);
    EXPECT_FALSE(reply->message.contains("continues"));
    EXPECT_EQ(reply->parameters().at("waitStatus"), 256);
    // Then the call that waited behind the stream.
    reply = client.read();
    ASSERT_TRUE(reply);
    EXPECT_FALSE(reply->isError());
}

TEST_F(VarlinkServerTest, OnewayCallsGetNoReply) {
    int calls = 0;
    server_->addMethod("org.example.Test.Poke", [&](const CallPtr& call) {
        ++calls;
        EXPECT_TRUE(call->oneway());
        EXPECT_FALSE(call->reply());
    });
    TestClient client(*this);
    client.call("org.example.Test.Poke", Json::object(), {}, false, true);
    client.call("org.varlink.service.GetInfo");
    std::optional<Reply> reply = client.read();
    ASSERT_TRUE(reply);
    EXPECT_TRUE(reply->parameters().contains("vendor"));
    EXPECT_EQ(calls, 1);
}

TEST_F(VarlinkServerTest, ACallKnowsItsClientHasGone) {
    CallPtr kept;
    bool told = false;
    server_->addMethod("org.example.Test.Later", [&](const CallPtr& call) {
        kept = call;
        call->onDisconnect([&] { told = true; });
    });
    {
        TestClient client(*this);
        client.call("org.example.Test.Later");
        ASSERT_TRUE(turnUntil([&] { return kept != nullptr; }));
        EXPECT_TRUE(kept->connected());
    }
    ASSERT_TRUE(turnUntil([&] { return server_->connectionCount() == 0; }));
    EXPECT_TRUE(told);
    EXPECT_FALSE(kept->connected());
    // The late reply is dropped and its fd closed (the leak check sees to it).
    Pipe pipe;
    std::vector<UniqueFd> fds;
    fds.push_back(std::move(pipe.write));
    EXPECT_FALSE(kept->reply(Json::object(), std::move(fds)));
    char byte;
    EXPECT_EQ(::read(pipe.read.get(), &byte, 1), 0);
}

TEST_F(VarlinkServerTest, AThrowingHandlerIsAnsweredWithFailed) {
    server_->addMethod("org.example.Test.Throw",
                       [](const CallPtr&) { throw std::runtime_error("boom"); });
    TestClient client(*this);
    client.call("org.example.Test.Throw");
    std::optional<Reply> reply = client.read();
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->error(), "org.example.Test.Failed");
    EXPECT_EQ(reply->parameters().at("message"), "boom");
    client.call("org.varlink.service.GetInfo");
    EXPECT_TRUE(client.read());
}

TEST_F(VarlinkServerTest, UpgradeIsRefused) {
    server_->addMethod("org.example.Test.Now", [](const CallPtr& call) { call->reply(); });
    TestClient client(*this);
    client.sendRaw(std::string(R"({"method":"org.example.Test.Now","upgrade":true})") + '\0');
    std::optional<Reply> reply = client.read();
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->error(), error::kInvalidParameter);
    EXPECT_EQ(reply->parameters(), (Json{{"parameter", "upgrade"}}));
}

TEST_F(VarlinkServerTest, BindMakesAWorldWritableSocketAndRemovesIt) {
    struct stat st {};
    ASSERT_EQ(::lstat(path_.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0666u);
    server_.reset();
    EXPECT_NE(::lstat(path_.c_str(), &st), 0);
    // A stale socket from an earlier run is replaced.
    startServer();
    startServer();
    TestClient client(*this);
    client.call("org.varlink.service.GetInfo");
    EXPECT_TRUE(client.read());
}

TEST_F(VarlinkServerTest, ServesAnActivatedSocket) {
    server_.reset();
    UniqueFd listening(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    path_ = dir_ + "/activated";
    std::strncpy(address.sun_path, path_.c_str(), sizeof(address.sun_path) - 1);
    ASSERT_EQ(::bind(listening.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    ASSERT_EQ(::listen(listening.get(), 16), 0);
    server_ = std::make_unique<varlink::Server>(
        event_, varlink::ServerInfo{"v", "p", "1", "u", "v.Failed", "v.LimitExceeded"});
    server_->listen(std::move(listening));
    TestClient client(*this);
    client.call("org.varlink.service.GetInfo");
    std::optional<Reply> reply = client.read();
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->parameters().at("product"), "p");
}

}  // namespace
}  // namespace nsfd::test

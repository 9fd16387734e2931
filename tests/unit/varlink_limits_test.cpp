// SPDX-License-Identifier: LGPL-2.1-or-later
// Bad clients on a real Varlink server: each is disconnected or refused, alone,
// with every fd it sent closed, while another client goes on being served.
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include "varlink/errors.hpp"
#include "varlink_test_util.hpp"

namespace nsfd::test {
namespace {

using varlink::CallPtr;

class VarlinkLimitsTest : public VarlinkServerFixture {
  protected:
    // The other client, which must not notice anything.
    void expectBystanderServed() {
        TestClient bystander(*this);
        bystander.call("org.varlink.service.GetInfo");
        std::optional<Reply> reply = bystander.read();
        ASSERT_TRUE(reply);
        EXPECT_FALSE(reply->isError());
    }
    bool reported(std::string_view what) const {
        return std::find(protocolErrors_.begin(), protocolErrors_.end(), what) !=
               protocolErrors_.end();
    }
};

TEST_F(VarlinkLimitsTest, GarbageEndsTheConnection) {
    TestClient client(*this);
    client.sendRaw(std::string("\x01\x02 not json at all") + '\0');
    EXPECT_TRUE(client.awaitClosed());
    EXPECT_TRUE(reported("InvalidJson"));
    EXPECT_TRUE(turnUntil([&] { return server_->connectionCount() == 0; }));
    expectBystanderServed();
}

TEST_F(VarlinkLimitsTest, AnInvalidCallEndsTheConnection) {
    TestClient client(*this);
    client.sendRaw(std::string(R"({"method":"nodots"})") + '\0');
    EXPECT_TRUE(client.awaitClosed());
    EXPECT_TRUE(reported("InvalidMethod"));
}

TEST_F(VarlinkLimitsTest, AHugeMessageEndsTheConnection) {
    varlink::ServerLimits limits;
    limits.decode.maxMessageBytes = 64 * 1024;
    startServer(limits);
    TestClient client(*this);
    // A megabyte with no end: refused after 64 KiB, long before its end.
    std::string huge = R"({"method":"a.b.C","parameters":{"s":")" + std::string(1 << 20, 'x');
    std::size_t sent = 0;
    while (sent < huge.size()) {
        ssize_t n = ::send(client.fd(), huge.data() + sent, huge.size() - sent,
                           MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
            ASSERT_TRUE(errno == EAGAIN || errno == EPIPE || errno == ECONNRESET);
            if (errno != EAGAIN) {
                break;
            }
            turn();
            continue;
        }
        sent += static_cast<std::size_t>(n);
    }
    EXPECT_LT(sent, huge.size());
    EXPECT_TRUE(client.awaitClosed());
    EXPECT_TRUE(reported("MessageTooLarge"));
    expectBystanderServed();
}

TEST_F(VarlinkLimitsTest, DeepNestingEndsTheConnection) {
    TestClient client(*this);
    client.sendRaw(R"({"method":"a.b.C","parameters":{"x":)" + std::string(10000, '[') +
                   std::string(10000, ']') + "}}" + '\0');
    EXPECT_TRUE(client.awaitClosed());
    EXPECT_TRUE(reported("TooDeep"));
    expectBystanderServed();
}

TEST_F(VarlinkLimitsTest, HalfAMessageThenHangUp) {
    {
        TestClient client(*this);
        client.sendRaw(R"({"method":"org.varlink.service.Get)");
        turn();
    }
    EXPECT_TRUE(turnUntil([&] { return server_->connectionCount() == 0; }));
    EXPECT_TRUE(reported("hung up in the middle of a message"));
    expectBystanderServed();
}

// A client that sends an fd with each call is read one call at a time (the
// kernel ends a read after the bytes an fd came with), so the bytes a turn may
// read do not bound it: the reads a turn may make do. Another client's call is
// answered within a turn or two, long before the first client's calls are all
// answered. With no bound on reads, all 200 were answered first.
TEST_F(VarlinkLimitsTest, AClientSendingAnFdWithEachCallTakesATurnNotTheLoop) {
    server_->addInterface(kTestIdl);
    server_->addMethod(
        "org.example.Test.TakeFds", [](const CallPtr& call) { call->reply(); }, varlink::kTakesFds);
    TestClient busy(*this);
    TestClient bystander(*this);
    Pipe pipe;
    constexpr int kCalls = 200;
    for (int i = 0; i < kCalls; ++i) {
        busy.call("org.example.Test.TakeFds", Json::object(), {pipe.read.get()});
    }
    bystander.call("org.varlink.service.GetInfo");
    std::optional<Reply> answer = bystander.read();
    ASSERT_TRUE(answer);
    EXPECT_FALSE(answer->isError());
    // The busy client's replies sent so far, read without turning the loop.
    int answered = 0;
    for (char buffer[4096];;) {
        ssize_t n = ::recv(busy.fd(), buffer, sizeof(buffer), MSG_DONTWAIT);
        if (n <= 0) {
            break;
        }
        answered += static_cast<int>(std::count(buffer, buffer + n, '\0'));
    }
    EXPECT_GT(answered, 0);
    EXPECT_LE(answered, 2 * 16) << "of " << kCalls << " calls sent before the other client's";
}

TEST_F(VarlinkLimitsTest, TwoHundredFdsAreRefusedAndClosed) {
    server_->addInterface(kTestIdl);
    server_->addMethod(
        "org.example.Test.TakeFds",
        [](const CallPtr& call) {
            call->reply({{"n", call->fdCount()}});
        },
        varlink::kTakesFds);
    TestClient client(*this);
    Pipe pipe;
    std::vector<UniqueFd> copies;
    std::vector<int> raw;
    for (int i = 0; i < 200; ++i) {
        copies.push_back(pipe.write.duplicate());
        raw.push_back(copies.back().get());
    }
    client.call("org.example.Test.TakeFds", Json::object(), raw);
    std::optional<Reply> reply = client.read();
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->error(), "org.example.Test.LimitExceeded");
    EXPECT_EQ(reply->parameters().at("limit"), "fileDescriptors");
    EXPECT_TRUE(reply->fds.empty());
    // Every copy the server got is closed: with ours gone, the pipe reads EOF.
    copies.clear();
    pipe.write.reset();
    char byte;
    EXPECT_EQ(::read(pipe.read.get(), &byte, 1), 0);
    // The connection goes on; the maximum itself is fine.
    Pipe other;
    std::vector<int> eight(8, other.write.get());
    client.call("org.example.Test.TakeFds", Json::object(), eight);
    reply = client.read();
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->parameters().at("n"), 8);
}

TEST_F(VarlinkLimitsTest, AClientThatNeverReadsIsDisconnectedAlone) {
    varlink::ServerLimits limits;
    limits.maxUnsentBytes = 256 * 1024;
    limits.maxUnsentFds = 16;
    startServer(limits);
    server_->addInterface(kTestIdl);
    server_->addMethod("org.example.Test.Big", [](const CallPtr& call) {
        call->reply({{"blob", std::string(64 * 1024, 'x')}});
    });
    server_->addMethod("org.example.Test.Fd", [](const CallPtr& call) {
        std::vector<UniqueFd> fds;
        fds.emplace_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        call->reply({{"fileDescriptor", 0}}, std::move(fds));
    });
    TestClient bytes(*this);
    TestClient fds(*this);
    for (int i = 0; i < 100 && server_->connectionCount() == 2; ++i) {
        bytes.call("org.example.Test.Big");
        turn();
    }
    EXPECT_TRUE(bytes.awaitClosed());
    EXPECT_TRUE(reported("does not read its replies"));
    // Fds pile up faster than bytes: the fd bound catches that one.
    for (int i = 0; i < 2000 && server_->connectionCount() == 1; ++i) {
        fds.call("org.example.Test.Fd");
        turn(std::chrono::milliseconds(0));
    }
    EXPECT_TRUE(fds.awaitClosed());
    expectBystanderServed();
}

TEST_F(VarlinkLimitsTest, ConnectionsPerUidAndInAll) {
    varlink::ServerLimits limits;
    limits.maxConnections = 3;
    limits.maxConnectionsPerUid = 2;
    limits.rootConnections = 0;
    startServer(limits);
    TestClient first(*this);
    TestClient second(*this);
    TestClient third(*this);  // a third of root's
    EXPECT_TRUE(third.awaitClosed());
    EXPECT_TRUE(reported("connection refused: too many connections of this uid"));
    std::optional<TestClient> nobody;
    std::optional<TestClient> nobodyAgain;
    runAsUser(65534, 65534, [&] {
        nobody.emplace(*this);
        nobodyAgain.emplace(*this);  // only two of nobody's, but four in all
    });
    turn();
    EXPECT_TRUE(nobodyAgain->awaitClosed());
    EXPECT_TRUE(reported("connection refused: too many connections"));
    for (TestClient* client : {&first, &second, &*nobody}) {
        client->call("org.varlink.service.GetInfo");
        EXPECT_TRUE(client->read());
    }
    // A slot freed is a slot taken again.
    first.close();
    EXPECT_TRUE(turnUntil([&] { return server_->connectionCount() == 2; }));
    expectBystanderServed();
}

// Every uid of a user namespace counts as the namespace's user: a rootless
// container running as several of its user's subordinate uids shares that
// user's connections, it gets no more (issue 22).
TEST_F(VarlinkLimitsTest, TheUidsOfAUserNamespaceCountAsItsOwner) {
    constexpr uid_t kOwner = 65534;  // nobody
    constexpr uid_t kFirstSubordinate = 200000;
    constexpr int kWorkers = 4, kConnectionsEach = 3;
    varlink::ServerLimits limits;
    limits.maxConnections = 64;
    limits.maxConnectionsPerUid = 4;
    limits.rootConnections = 0;
    startServer(limits);
    Pipe ready, mapped, stop;
    pid_t container = ::fork();
    ASSERT_GE(container, 0);
    if (container == 0) {
        // The user's rootless container: a user namespace it owns, uids 0-7 in
        // it are 200000-200007 outside; workers connect as uids 1-4 in it.
        ready.read.reset();
        mapped.write.reset();
        stop.write.reset();
        char byte = 0;
        if (::setgroups(0, nullptr) < 0 || ::setresgid(kOwner, kOwner, kOwner) < 0 ||
            ::setresuid(kOwner, kOwner, kOwner) < 0 || ::unshare(CLONE_NEWUSER) < 0 ||
            ::write(ready.write.get(), "r", 1) != 1 || ::read(mapped.read.get(), &byte, 1) != 1) {
            ::_exit(1);
        }
        std::vector<pid_t> workers;
        for (int i = 1; i <= kWorkers; ++i) {
            pid_t worker = ::fork();
            if (worker == 0) {
                std::vector<int> sockets;
                if (::setresgid(i, i, i) == 0 && ::setresuid(i, i, i) == 0) {
                    for (int c = 0; c < kConnectionsEach; ++c) {
                        int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                        sockaddr_un address{};
                        address.sun_family = AF_UNIX;
                        (void)std::snprintf(address.sun_path, sizeof(address.sun_path), "%s",
                                            path_.c_str());
                        (void)::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
                        sockets.push_back(fd);
                    }
                }
                for (;;) {
                    ::pause();
                }
            }
            workers.push_back(worker);
        }
        (void)::read(stop.read.get(), &byte, 1);  // end of file: the test is done
        for (pid_t worker : workers) {
            ::kill(worker, SIGKILL);
            ::waitpid(worker, nullptr, 0);
        }
        ::_exit(0);
    }
    ready.write.reset();
    mapped.read.reset();
    stop.read.reset();
    char byte = 0;
    ASSERT_EQ(::read(ready.read.get(), &byte, 1), 1);
    std::string map = "0 " + std::to_string(kFirstSubordinate) + " 8\n";
    for (const char* file : {"uid_map", "gid_map"}) {
        std::string path = "/proc/" + std::to_string(container) + "/" + file;
        int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
        ASSERT_GE(fd, 0) << path;
        EXPECT_EQ(::write(fd, map.data(), map.size()), static_cast<ssize_t>(map.size())) << path;
        ::close(fd);
    }
    ASSERT_EQ(::write(mapped.write.get(), "m", 1), 1);
    const std::string refusal = "connection refused: too many connections of uid " +
                                std::to_string(kOwner) + ", which owns this uid's user namespace";
    auto refused = [&] {
        return static_cast<std::size_t>(
            std::count(protocolErrors_.begin(), protocolErrors_.end(), refusal));
    };
    EXPECT_TRUE(turnUntil([&] {
        return server_->connectionCount() + refused() == std::size_t{kWorkers * kConnectionsEach};
    })) << server_->connectionCount()
        << " connections, " << refused() << " refused";
    // Its user's share, whatever uids they ran as.
    EXPECT_EQ(server_->connectionCount(), 4U);
    // The user itself has none left; root and others still get in.
    std::optional<TestClient> owner;
    runAsUser(kOwner, kOwner, [&] { owner.emplace(*this); });
    EXPECT_TRUE(owner->awaitClosed());
    std::optional<TestClient> other;
    runAsUser(65533, 65533, [&] { other.emplace(*this); });
    other->call("org.varlink.service.GetInfo");
    EXPECT_TRUE(other->read());
    expectBystanderServed();
    stop.write.reset();
    int status = -1;
    ASSERT_EQ(::waitpid(container, &status, 0), container);
    EXPECT_EQ(status, 0);
    EXPECT_TRUE(turnUntil([&] { return server_->connectionCount() == 1; }));  // `other`'s
}

// Other users together cannot take the connections kept for root (issue 22).
TEST_F(VarlinkLimitsTest, RootFindsRoomWhenOtherUsersHaveTakenTheRest) {
    varlink::ServerLimits limits;
    limits.maxConnections = 4;
    limits.maxConnectionsPerUid = 2;
    limits.rootConnections = 2;
    startServer(limits);
    std::optional<TestClient> nobody;
    std::optional<TestClient> other;
    std::optional<TestClient> third;
    runAsUser(65534, 65534, [&] { nobody.emplace(*this); });
    runAsUser(65533, 65533, [&] { other.emplace(*this); });
    runAsUser(65532, 65532, [&] { third.emplace(*this); });  // the rest is root's
    turn();
    EXPECT_TRUE(third->awaitClosed());
    EXPECT_TRUE(reported("connection refused: too many connections"));
    TestClient root(*this);
    TestClient rootAgain(*this);
    for (TestClient* client : {&*nobody, &*other, &root, &rootAgain}) {
        client->call("org.varlink.service.GetInfo");
        EXPECT_TRUE(client->read());
    }
}

TEST_F(VarlinkLimitsTest, PendingCallsStopTheReadingNotTheClient) {
    varlink::ServerLimits limits;
    limits.maxPendingCalls = 4;
    startServer(limits);
    server_->addInterface(kTestIdl);
    std::vector<CallPtr> later;
    server_->addMethod("org.example.Test.Later",
                       [&](const CallPtr& call) { later.push_back(call); });
    TestClient client(*this);
    for (int i = 0; i < 10; ++i) {
        client.call("org.example.Test.Later", {{"n", i}});
    }
    EXPECT_TRUE(client.silentFor(std::chrono::milliseconds(50)));
    EXPECT_EQ(later.size(), 4u);
    for (std::size_t i = 0; i < 10; ++i) {
        ASSERT_TRUE(turnUntil([&] { return later.size() > i; }));
        later[i]->reply({{"n", later[i]->parameters().at("n")}});
        std::optional<Reply> reply = client.read();
        ASSERT_TRUE(reply);
        EXPECT_EQ(reply->parameters().at("n"), i);
    }
    expectBystanderServed();
}

}  // namespace
}  // namespace nsfd::test

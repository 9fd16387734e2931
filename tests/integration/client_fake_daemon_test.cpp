// SPDX-License-Identifier: LGPL-2.1-or-later
// libnsfd-client's Varlink transport against a "nsfdd" that answers badly: a
// real socket and a real peer (a thread of the test), each connection it
// accepts handled by the next script. Whatever comes back, the client throws
// a named nsfd::Error, in bounded time, and keeps no fd of it.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "fixture.hpp"
#include "nsfd/client.hpp"
#include "nsfd/dbus_names.hpp"

namespace nsfd::test {
namespace {

constexpr int kPeerWaitMs = 30'000;

// Reads one call (up to its NUL), or what came before the peer hung up.
std::string readCall(int connection) {
    std::string call;
    char c;
    for (;;) {
        pollfd p{connection, POLLIN, 0};
        if (::poll(&p, 1, kPeerWaitMs) <= 0 || ::read(connection, &c, 1) != 1 || c == '\0') {
            return call;
        }
        call.push_back(c);
    }
}

// All of `bytes`, the fds with the first byte; false once the client hung up.
bool sendRaw(int connection, std::string_view bytes, const std::vector<int>& fds = {}) {
    return sendAllWithFds(connection, bytes, fds);
}

std::string withNul(std::string_view json) {
    std::string out(json);
    out.push_back('\0');
    return out;
}

// A "nsfdd" on a real socket. It accepts every connection, each on a thread
// of its own, and answers the n-th call that comes, on any of them, with the
// n-th script; a script that returns false hangs up. Declared before the
// Client, so that the client hangs up first and the threads end.
class FakeNsfdd {
  public:
    using Script = std::function<bool(int connection)>;

    explicit FakeNsfdd(std::vector<Script> scripts)
        : scripts_(scripts.begin(), scripts.end()),
          listener_(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        std::string path = dir_.socket();
        std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
        if (!listener_.ok() ||
            ::bind(listener_.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) < 0 ||
            ::listen(listener_.get(), 16) < 0) {
            throw std::system_error(errno, std::system_category(), "fake nsfdd's socket");
        }
        thread_ = std::thread([this] { acceptAll(); });
    }
    FakeNsfdd(const FakeNsfdd&) = delete;
    FakeNsfdd& operator=(const FakeNsfdd&) = delete;
    ~FakeNsfdd() {
        stopping_ = true;
        thread_.join();
    }

    std::string path() const { return dir_.socket(); }
    // The calls that came, in order.
    std::vector<std::string> calls() {
        std::lock_guard lock(mutex_);
        return calls_;
    }

  private:
    void acceptAll() {
        std::vector<std::thread> connections;
        while (!stopping_) {
            pollfd p{listener_.get(), POLLIN, 0};
            if (::poll(&p, 1, 20) <= 0) {
                continue;
            }
            UniqueFd connection(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
            if (connection.ok()) {
                connections.emplace_back([this](UniqueFd c) { serve(c.get()); },
                                         std::move(connection));
            }
        }
        for (std::thread& t : connections) {
            t.join();
        }
    }

    void serve(int connection) {
        for (;;) {
            std::string call = readCall(connection);
            if (call.empty()) {
                return;  // the client hung up
            }
            Script script;
            {
                std::lock_guard lock(mutex_);
                calls_.push_back(call);
                if (scripts_.empty()) {
                    return;
                }
                script = std::move(scripts_.front());
                scripts_.pop_front();
            }
            if (!script(connection)) {
                return;
            }
        }
    }

    SocketDir dir_;
    std::mutex mutex_;
    std::deque<Script> scripts_;
    std::vector<std::string> calls_;
    std::atomic<bool> stopping_{false};
    UniqueFd listener_;
    std::thread thread_;
};

// Answers `reply` (with its NUL) and the fds, and waits for the next call.
FakeNsfdd::Script answer(std::string reply, std::vector<int> fds = {}) {
    return [reply = std::move(reply), fds = std::move(fds)](int connection) {
        return sendRaw(connection, reply, fds);
    };
}

// Sends `bytes` (no NUL added) and hangs up.
FakeNsfdd::Script answerAndHangUp(std::string bytes) {
    return [bytes = std::move(bytes)](int connection) {
        sendRaw(connection, bytes);
        return false;
    };
}

constexpr std::string_view kFailed = nsfd::dbusErrorName(ErrorKind::Failed);

using ClientAgainstFakeNsfdd = LeakCheckedTest;

// The exception `call` threw: what it is and its D-Bus name.
template <typename Call>
std::pair<std::string, std::string> thrownBy(Call&& call) {
    try {
        call();
    } catch (const DaemonUnavailable& e) {
        return {"DaemonUnavailable", e.dbusName()};
    } catch (const Error& e) {
        return {"Error", e.dbusName()};
    } catch (const std::exception& e) {
        return {std::string("not an nsfd::Error: ") + e.what(), ""};
    }
    return {"nothing", ""};
}

std::pair<std::string, std::string> failed() {
    return {"Error", std::string(kFailed)};
}

TEST_F(ClientAgainstFakeNsfdd, RepliesThatAreNotVarlinkAreNamedErrors) {
    std::string deep = R"({"parameters":{"version":)" + std::string(10000, '[');
    FakeNsfdd nsfdd({
        answer(withNul("this is not JSON")),
        answer(withNul("[1, 2, 3]")),
        answer(withNul(deep)),
        answer(withNul(R"({"parameters":{"version":5}})")),
        answer(withNul(R"({"parameters":"version"})")),
        answer(withNul(R"({"error":"not a name","parameters":{}})")),
        answer(withNul(R"({"error":42})")),
        answer(withNul(R"({"parameters":{"version":"1"},"continues":true})")),
        answer(withNul(R"({"parameters":{},"surprise":1})")),
        answer(withNul(R"({"parameters":{}})")),
        answer(withNul("{\"parameters\":{\"version\":\"\xff\xfe\"}}")),
    });
    Client client = Client::varlink(nsfdd.path());
    for (int i = 0; i < 11; ++i) {
        EXPECT_EQ(thrownBy([&] { client.daemonVersion(); }), failed()) << "reply " << i;
    }
}

TEST_F(ClientAgainstFakeNsfdd, AnErrorOfNoContractKeepsItsName) {
    FakeNsfdd nsfdd({
        answer(withNul(R"({"error":"com.example.Oops","parameters":{"message":"oops"}})")),
        answer(withNul(R"({"error":"org.varlink.service.InvalidParameter",)"
                       R"("parameters":{"parameter":"types"}})")),
    });
    Client client = Client::varlink(nsfdd.path());
    EXPECT_EQ(thrownBy([&] { client.daemonVersion(); }),
              (std::pair<std::string, std::string>{"Error", "com.example.Oops"}));
    EXPECT_THROW(client.daemonVersion(), InvalidArgument);
}

TEST_F(ClientAgainstFakeNsfdd, HangingUpMidReplyIsDaemonUnavailable) {
    FakeNsfdd nsfdd({
        answerAndHangUp(R"({"parameters":{"version":"1")"),  // no NUL
        answerAndHangUp(""),
    });
    Client client = Client::varlink(nsfdd.path());
    for (int i = 0; i < 2; ++i) {
        EXPECT_EQ(thrownBy([&] { client.daemonVersion(); }).first, "DaemonUnavailable") << i;
    }
}

// A reply of 64 KiB exactly (the client's read buffer), then the hang-up,
// as from a nsfdd that answers and exits: the answer counts.
TEST_F(ClientAgainstFakeNsfdd, AReplyFillingTheReadBufferThenAHangUpIsAnAnswer) {
    std::string prefix = R"({"parameters":{"version":")";
    std::string suffix = R"("}})";
    std::string reply =
        prefix + std::string(64 * 1024 - 1 - prefix.size() - suffix.size(), 'v') + suffix;
    ASSERT_EQ(withNul(reply).size(), 64U * 1024);
    FakeNsfdd nsfdd({answerAndHangUp(withNul(reply))});
    Client client = Client::varlink(nsfdd.path());
    EXPECT_EQ(client.daemonVersion().size(), reply.size() - prefix.size() - suffix.size());
}

TEST_F(ClientAgainstFakeNsfdd, AHugeReplyIsRefusedNotBuffered) {
    FakeNsfdd nsfdd({answerAndHangUp(std::string(20 * 1024 * 1024, ' '))});
    Client client = Client::varlink(nsfdd.path());
    EXPECT_EQ(thrownBy([&] { client.daemonVersion(); }), failed());
}

// Fds nsfdd's reply does not account for, or that are not what it says.
TEST_F(ClientAgainstFakeNsfdd, FdsOutOfRangeUnreferencedTooManyOrOfTheWrongKind) {
    UniqueFd devNull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    UniqueFd ownNet(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
    std::vector<int> twenty(20, ownNet.get());
    FakeNsfdd nsfdd({
        answer(withNul(R"({"parameters":{"fileDescriptor":1}})"), {ownNet.get()}),
        answer(withNul(R"({"parameters":{"fileDescriptor":-1}})"), {ownNet.get()}),
        answer(withNul(R"({"parameters":{"fileDescriptor":"0"}})"), {ownNet.get()}),
        answer(withNul(R"({"parameters":{"fileDescriptor":0}})"), twenty),
        answer(withNul(R"({"parameters":{"version":"1"}})"), {ownNet.get(), devNull.get()}),
        answer(withNul(R"({"parameters":{"namespaces":{"net":0,"uts":0}}})"), {ownNet.get()}),
        answer(withNul(R"({"parameters":{"fileDescriptor":0}})"), {devNull.get()}),
        answer(withNul(R"({"parameters":{"namespaces":{"net":0}}})"), {devNull.get()}),
    });
    Client client = Client::varlink(nsfdd.path());
    pid_t self = ::getpid();
    for (int i = 0; i < 4; ++i) {
        EXPECT_EQ(thrownBy([&] { client.namespaceFd(self, NsType::Net); }), failed()) << i;
    }
    EXPECT_EQ(client.daemonVersion(), "1") << "fds nobody asked for are closed";
    const NsType types[] = {NsType::Net, NsType::Uts};
    EXPECT_EQ(thrownBy([&] { client.namespaceFds(self, types); }), failed());
    EXPECT_EQ(thrownBy([&] { client.namespaceFd(self, NsType::Net); }), failed())
        << "/dev/null is no namespace";
    EXPECT_EQ(thrownBy([&] { client.namespaceFds(self, types); }), failed())
        << "/dev/null is no namespace";
}

TEST_F(ClientAgainstFakeNsfdd, WatchExitsThatDoesNotBeginWithReady) {
    FakeNsfdd nsfdd({
        answer(withNul(R"({"parameters":{"ready":true}})")),  // not "continues"
        answer(withNul(R"({"parameters":{"id":1,"pid":2,"waitStatus":0},"continues":true})")),
        answer(withNul(R"({"error":"org.nsfd1.Manager.AccessDenied","parameters":{}})")),
    });
    Client client = Client::varlink(nsfdd.path());
    auto listen = [&] { client.onProcessExited([](const ExitEvent&) {}); };
    EXPECT_EQ(thrownBy(listen), failed());
    EXPECT_EQ(thrownBy(listen), failed());
    EXPECT_THROW(listen(), AccessDenied);
}

// Numbers a field cannot hold (a negative count, a float, a pid past int) are
// nsfdd's error, not a wrapped or truncated value.
TEST_F(ClientAgainstFakeNsfdd, NumbersOutOfRangeAreNamedErrors) {
    FakeNsfdd nsfdd({
        answer(
            withNul(R"({"parameters":{"version":"1","trackedProcesses":-1,"kernelFeatures":[]}})")),
        answer(withNul(
            R"({"parameters":{"version":"1","trackedProcesses":1.5,"kernelFeatures":[]}})")),
        answer(withNul(R"({"parameters":{"processes":[{"pid":4294967296,"id":7}]}})")),
    });
    Client client = Client::varlink(nsfdd.path());
    EXPECT_EQ(thrownBy([&] { client.trackedCount(); }), failed());
    EXPECT_EQ(thrownBy([&] { client.trackedCount(); }), failed());
    EXPECT_EQ(thrownBy([&] { client.list(); }), failed());
}

// An exit stream that turns bad ends with a named error; the next processing
// watches again, and the new stream's exits arrive.
TEST_F(ClientAgainstFakeNsfdd, ABrokenExitStreamIsWatchedAgain) {
    FakeNsfdd nsfdd({
        [](int connection) {
            return sendRaw(connection,
                           withNul(R"({"parameters":{"ready":true},"continues":true})")) &&
                   sendRaw(connection, withNul("not a reply"));
        },
        [](int connection) {
            return sendRaw(connection,
                           withNul(R"({"parameters":{"ready":true},"continues":true})")) &&
                   sendRaw(connection,
                           withNul(R"({"parameters":{"id":7,"pid":70,"waitStatus":256},)"
                                   R"("continues":true})"));
        },
    });
    Client client = Client::varlink(nsfdd.path());
    std::vector<ExitEvent> events;
    client.onProcessExited([&](const ExitEvent& e) { events.push_back(e); });
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    bool failedOnce = false;
    while (events.empty() && std::chrono::steady_clock::now() < deadline) {
        pollfd p{client.eventFd(), client.pollEvents(), 0};
        ::poll(&p, 1, 50);
        try {
            client.processEvents();
        } catch (const Error& e) {
            EXPECT_EQ(e.dbusName(), kFailed);
            failedOnce = true;
        }
    }
    EXPECT_TRUE(failedOnce);
    ASSERT_EQ(events.size(), 1U);
    EXPECT_EQ(events[0].id, 7U);
    EXPECT_EQ(events[0].waitStatus, 256);
}

// nsfdd closed the calls' connection while the client was idle: the next
// call goes on a new one; once made, a call is never sent twice.
TEST_F(ClientAgainstFakeNsfdd, ReconnectsWhenIdleAndNeverSendsACallTwice) {
    FakeNsfdd nsfdd({answerAndHangUp(withNul(R"({"parameters":{"version":"1"}})")),
                     answerAndHangUp(""), answer(withNul(R"({"parameters":{"version":"2"}})"))});
    Client client = Client::varlink(nsfdd.path());
    EXPECT_EQ(client.daemonVersion(), "1");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the hang-up arrives
    EXPECT_THROW(client.daemonVersion(), DaemonUnavailable);
    EXPECT_EQ(client.daemonVersion(), "2");
    EXPECT_EQ(nsfdd.calls().size(), 3U);
}

// A nsfdd that accepts no connection (stopped, hung) and whose backlog is
// full: connect(2) would wait for ever. The client gives up as it does for a
// call nsfdd does not answer, with DaemonUnavailable.
TEST_F(ClientAgainstFakeNsfdd, ASocketNobodyAcceptsOnIsDaemonUnavailableInTime) {
    SocketDir dir;
    UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, dir.socket().c_str(), dir.socket().size() + 1);
    ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    ASSERT_EQ(::listen(listener.get(), 0), 0);
    std::vector<UniqueFd> queued;
    for (;;) {  // fill the backlog
        UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (::connect(s.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) < 0) {
            ASSERT_EQ(errno, EAGAIN);
            break;
        }
        queued.push_back(std::move(s));
    }
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        try {
            Client::varlink(dir.socket());
        } catch (const DaemonUnavailable&) {
            ::_exit(0);
        } catch (...) {
        }
        ::_exit(1);
    }
    int status = reapWithin(pid, "Client::varlink() on a socket nobody accepts on",
                            std::chrono::seconds(40));
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

}  // namespace
}  // namespace nsfd::test

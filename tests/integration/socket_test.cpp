// SPDX-License-Identifier: LGPL-2.1-or-later
// OpenSocket over Varlink, on a real nsfdd and its real nsfd-helper, as real
// users, against real processes in fresh network namespaces: what the socket
// can do there is what the caller could do if it lived there, and no more.
#include <arpa/inet.h>
#include <linux/if.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <nlohmann/json.hpp>

#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "fixture.hpp"
#include "nsfd/socket_names.hpp"
#include "varlink_connection.hpp"

namespace nsfd::test {
namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;

constexpr int kSoNetnsCookie = 71;  // SO_NETNS_COOKIE (5.14; Debian's headers lack it)
constexpr std::uint16_t kPort = 4711;

gid_t gidOf(const char* name) noexcept {
    struct passwd* pw = ::getpwnam(name);
    return pw == nullptr ? 0 : pw->pw_gid;
}
const gid_t kUserGid = gidOf("nsfd-test-a");
const gid_t kOtherGid = gidOf("nsfd-test-b");

const char* const kSocketGrant = R"(
[[grant]]
user = "nsfd-test-a"
sockets = ["unix", "inet", "inet6", "netlink", "packet"]
# To see a tracked process's object (org.nsfd1.Process.OpenSocket).
info = true
)";

struct Opened {
    Json reply;
    UniqueFd socket;  // the one fd of a successful reply
    std::size_t fdCount = 0;
};

std::uint64_t netnsCookie(int socket) {
    std::uint64_t cookie = 0;
    socklen_t length = sizeof(cookie);
    EXPECT_EQ(::getsockopt(socket, SOL_SOCKET, kSoNetnsCookie, &cookie, &length), 0)
        << std::strerror(errno);
    return cookie;
}

// SO_NETNS_COOKIE of the network namespace of `pid`, read by a thread that entered it.
std::uint64_t netnsCookieOf(pid_t pid) {
    std::uint64_t cookie = 0;
    std::thread thread([&] {
        UniqueFd ns(::open(nsPath(pid, "net").c_str(), O_RDONLY | O_CLOEXEC));
        if (!ns.ok() || ::setns(ns.get(), CLONE_NEWNET) < 0) {
            return;
        }
        UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        cookie = netnsCookie(s.get());
    });
    thread.join();
    return cookie;
}

// The interface names of /proc/PID/net/dev: the links of its network namespace.
std::set<std::string> linksOf(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/net/dev");
    std::set<std::string> names;
    std::string line;
    while (std::getline(in, line)) {
        std::size_t colon = line.find(':');
        if (colon == std::string::npos) {
            continue;
        }
        std::string name = line.substr(0, colon);
        name.erase(0, name.find_first_not_of(' '));
        names.insert(name);
    }
    return names;
}

// An RTM_GETLINK dump on a netlink-route socket: the names it lists.
std::set<std::string> dumpLinks(int socket) {
    struct {
        nlmsghdr header;
        ifinfomsg info;
    } request{};
    request.header.nlmsg_len = sizeof(request);
    request.header.nlmsg_type = RTM_GETLINK;
    request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    request.header.nlmsg_seq = 1;
    request.info.ifi_family = AF_UNSPEC;
    EXPECT_EQ(::send(socket, &request, sizeof(request), 0), static_cast<ssize_t>(sizeof(request)));
    std::set<std::string> names;
    alignas(nlmsghdr) char buffer[65536];
    for (;;) {
        ssize_t n = ::recv(socket, buffer, sizeof(buffer), 0);
        if (n <= 0) {
            ADD_FAILURE() << "recv: " << std::strerror(errno);
            return names;
        }
        int left = static_cast<int>(n);
        for (auto* h = reinterpret_cast<nlmsghdr*>(buffer); NLMSG_OK(h, left);
             h = NLMSG_NEXT(h, left)) {
            if (h->nlmsg_type == NLMSG_DONE) {
                return names;
            }
            if (h->nlmsg_type == NLMSG_ERROR) {
                ADD_FAILURE() << "the dump failed";
                return names;
            }
            auto* info = static_cast<ifinfomsg*>(NLMSG_DATA(h));
            int length = static_cast<int>(IFLA_PAYLOAD(h));
            for (auto* a = IFLA_RTA(info); RTA_OK(a, length); a = RTA_NEXT(a, length)) {
                if (a->rta_type == IFLA_IFNAME) {
                    names.insert(static_cast<const char*>(RTA_DATA(a)));
                }
            }
        }
    }
}

// RTM_NEWLINK setting lo down: the kernel's answer, 0 or -errno.
int setLoopbackDown(int socket) {
    struct {
        nlmsghdr header;
        ifinfomsg info;
    } request{};
    request.header.nlmsg_len = sizeof(request);
    request.header.nlmsg_type = RTM_NEWLINK;
    request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    request.header.nlmsg_seq = 2;
    request.info.ifi_family = AF_UNSPEC;
    request.info.ifi_index = 1;  // lo
    request.info.ifi_change = IFF_UP;
    request.info.ifi_flags = 0;
    if (::send(socket, &request, sizeof(request), 0) != static_cast<ssize_t>(sizeof(request))) {
        return -errno;
    }
    alignas(nlmsghdr) char buffer[4096];
    ssize_t n = ::recv(socket, buffer, sizeof(buffer), 0);
    auto* h = reinterpret_cast<nlmsghdr*>(buffer);
    if (n < static_cast<ssize_t>(NLMSG_LENGTH(sizeof(nlmsgerr))) || h->nlmsg_type != NLMSG_ERROR) {
        return -EPROTO;
    }
    return static_cast<nlmsgerr*>(NLMSG_DATA(h))->error;
}

// A root process in a fresh network namespace with lo up, a bridge of its own
// and a TCP service listening on 127.0.0.1:kPort there.
Child spawnNetworkTarget() {
    return Child::spawn(
        [] {
            int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
            struct ifreq ifr {};
            std::strcpy(ifr.ifr_name, "lo");
            ifr.ifr_flags = IFF_UP;
            if (s < 0 || ::ioctl(s, SIOCSIFFLAGS, &ifr) < 0) {
                return errno;
            }
            ::close(s);
            if (std::system("ip link add nsfdtest0 type bridge") != 0) {
                return EIO;
            }
            int listener = ::socket(AF_INET, SOCK_STREAM, 0);  // kept open: the service
            struct sockaddr_in addr {};
            addr.sin_family = AF_INET;
            addr.sin_port = htons(kPort);
            addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            if (listener < 0 ||
                ::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0 ||
                ::listen(listener, 16) < 0) {
                return errno;
            }
            return 0;
        },
        Child::Options{CLONE_NEWNET, 0});
}

int connectToService(int socket) {
    struct sockaddr_in addr {};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(kPort);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return ::connect(socket, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0 ? errno : 0;
}

// The uid column of the /proc/PID/net/tcp line whose local address is `local`.
std::optional<uid_t> tcpUidOf(pid_t pid, const sockaddr_in& local) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/net/tcp");
    std::string line;
    std::getline(in, line);  // header
    char want[32];
    (void)std::snprintf(want, sizeof(want), "%08X:%04X", local.sin_addr.s_addr,
                        ntohs(local.sin_port));
    while (std::getline(in, line)) {
        std::istringstream fields(line);
        std::string slot, localAddress, remote, state, queues, timer, retransmits;
        uid_t uid = 0;
        fields >> slot >> localAddress >> remote >> state >> queues >> timer >> retransmits >> uid;
        if (localAddress == want) {
            return uid;
        }
    }
    return std::nullopt;
}

class SocketTest : public DaemonTest {
  protected:
    std::string config() const override { return kSocketGrant; }
    std::string varlinkPath() const override { return socket_; }

    void SetUp() override {
        if (kUser == 0 || kOtherUser == 0) {
            GTEST_SKIP() << "users nsfd-test-a and nsfd-test-b are missing (scripts/test-users)";
        }
        dir_.emplace();
        socket_ = dir_->socket();
        ::setenv("NSFD_VARLINK_SOCKET", socket_.c_str(), 1);  // nsfdctl's
        DaemonTest::SetUp();
    }

    void TearDown() override {
        DaemonTest::TearDown();
        ::setenv("NSFD_VARLINK_SOCKET", kNoVarlinkSocket, 1);
        dir_.reset();
    }

    // OpenSocket of `pid` as uid/gid (no supplementary groups), over a connection of its own.
    Opened openSocketAs(uid_t uid, gid_t gid, pid_t pid, int family, int type, int protocol) {
        Opened out;
        runAsUser(uid, gid, [&] {
            VarlinkConnection c(socket_);
            auto [reply, fds] =
                c.call("org.nsfd1.Manager.OpenSocket",
                       {{"pid", pid}, {"family", family}, {"type", type}, {"protocol", protocol}});
            out.reply = reply;
            out.fdCount = fds.size();
            if (!fds.empty()) {
                out.socket = std::move(fds[0]);
            }
        });
        return out;
    }

    Opened openSocketAsUser(pid_t pid, int family, int type, int protocol = 0) {
        return openSocketAs(kUser, kUserGid, pid, family, type, protocol);
    }

    // The helper nsfdd started (its only child), once there is one.
    pid_t helperPid() {
        std::vector<pid_t> children = childrenOf(daemon_->pid());
        return children.size() == 1 ? children[0] : 0;
    }

    std::optional<SocketDir> dir_;
    std::string socket_;
};

TEST_F(SocketTest, NetlinkRouteDumpsTheTargetsLinksButRtmNewlinkIsRefused) {
    Child target = spawnNetworkTarget();
    Opened opened = openSocketAsUser(target.pid(), AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
    ASSERT_EQ(errorOf(opened.reply), "") << opened.reply.dump();
    ASSERT_TRUE(opened.socket.ok());
    std::set<std::string> expected = linksOf(target.pid());
    ASSERT_TRUE(expected.count("nsfdtest0")) << "the target's own bridge";
    EXPECT_EQ(dumpLinks(opened.socket.get()), expected);
    EXPECT_NE(linksOf(::getpid()), expected) << "the test's own namespace differs";
    // The caller may look, not change: CAP_NET_ADMIN is checked on the
    // socket's opener, who is the caller.
    EXPECT_EQ(setLoopbackDown(opened.socket.get()), -EPERM);
    // Root's OpenSocket is made without capabilities too.
    Opened asRoot = openSocketAs(0, 0, target.pid(), AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
    ASSERT_TRUE(asRoot.socket.ok()) << asRoot.reply.dump();
    EXPECT_EQ(setLoopbackDown(asRoot.socket.get()), -EPERM);
    // A socket made there by root with its capabilities could: the request is valid.
    int answer = 1;
    std::thread thread([&] {
        UniqueFd ns(::open(nsPath(target.pid(), "net").c_str(), O_RDONLY | O_CLOEXEC));
        if (ns.ok() && ::setns(ns.get(), CLONE_NEWNET) == 0) {
            UniqueFd s(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
            answer = setLoopbackDown(s.get());
        }
    });
    thread.join();
    EXPECT_EQ(answer, 0);
}

TEST_F(SocketTest, ConnectsInsideTheTargetsNamespaceAsTheCaller) {
    Child target = spawnNetworkTarget();
    // Nothing listens on that port in the test's own namespace.
    UniqueFd here(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_EQ(connectToService(here.get()), ECONNREFUSED);

    Opened opened = openSocketAsUser(target.pid(), AF_INET, SOCK_STREAM);
    ASSERT_EQ(errorOf(opened.reply), "") << opened.reply.dump();
    ASSERT_EQ(opened.fdCount, 1U);
    EXPECT_EQ(opened.reply["parameters"]["fileDescriptor"], 0);
    EXPECT_EQ(connectToService(opened.socket.get()), 0);

    sockaddr_in local{};
    socklen_t length = sizeof(local);
    ASSERT_EQ(::getsockname(opened.socket.get(), reinterpret_cast<sockaddr*>(&local), &length), 0);
    std::optional<uid_t> uid = tcpUidOf(target.pid(), local);
    ASSERT_TRUE(uid.has_value()) << "the connection is in the target's /proc/PID/net/tcp";
    EXPECT_EQ(*uid, kUser);
    EXPECT_FALSE(tcpUidOf(::getpid(), local).has_value());

    std::uint64_t cookie = netnsCookie(opened.socket.get());
    EXPECT_EQ(cookie, netnsCookieOf(target.pid()));
    EXPECT_NE(cookie, netnsCookie(here.get()));
    // Flags are the receiver's to set: it gets a blocking socket, close-on-exec
    // as every received fd (MSG_CMSG_CLOEXEC).
    EXPECT_EQ(::fcntl(opened.socket.get(), F_GETFL) & O_NONBLOCK, 0);
}

TEST_F(SocketTest, RawAndPacketSocketsAreRefusedWithTheErrnoAndNoFd) {
    Child target = spawnNetworkTarget();
    for (auto [family, type, protocol] :
         {std::tuple<int, int, int>{AF_INET, SOCK_RAW, IPPROTO_ICMP},
          std::tuple<int, int, int>{AF_PACKET, SOCK_RAW, 0x0300},
          std::tuple<int, int, int>{AF_PACKET, SOCK_DGRAM, 0x0300}}) {
        Opened opened = openSocketAsUser(target.pid(), family, type, protocol);
        EXPECT_EQ(errorOf(opened.reply), "SocketFailed") << opened.reply.dump();
        EXPECT_EQ(opened.reply["parameters"]["errno"], EPERM) << opened.reply.dump();
        EXPECT_EQ(opened.fdCount, 0U);
    }
}

TEST_F(SocketTest, AUserWithoutAGrantOrAFamilyNotGrantedIsDeniedWithNoFd) {
    Child target = spawnNetworkTarget();
    Opened other = openSocketAs(kOtherUser, kOtherGid, target.pid(), AF_INET, SOCK_STREAM, 0);
    EXPECT_EQ(errorOf(other.reply), "AccessDenied") << other.reply.dump();
    EXPECT_EQ(other.fdCount, 0U);
    Opened notGranted = openSocketAsUser(target.pid(), AF_VSOCK, SOCK_STREAM);
    EXPECT_EQ(errorOf(notGranted.reply), "AccessDenied") << notGranted.reply.dump();
    EXPECT_EQ(notGranted.fdCount, 0U);
    // A root process in the caller's own network namespace: the caller could
    // make that socket itself, so the kernel rule lets it.
    Child hostRoot = Child::spawn();
    Opened own = openSocketAs(kOtherUser, kOtherGid, hostRoot.pid(), AF_INET, SOCK_STREAM, 0);
    EXPECT_EQ(errorOf(own.reply), "") << own.reply.dump();
    EXPECT_EQ(own.fdCount, 1U);
}

TEST_F(SocketTest, TheOwnerOfARootlessContainerGetsWhatItsUserNamespaceGives) {
    // nsfd-test-b has no grant; it owns the user namespace that owns this
    // network namespace, so it could enter it itself.
    Child target = Child::spawn([] {
        if (::setresgid(kOtherGid, kOtherGid, kOtherGid) < 0 ||
            ::setresuid(kOtherUser, kOtherUser, kOtherUser) < 0 ||
            ::unshare(CLONE_NEWUSER | CLONE_NEWNET) < 0 || ::prctl(PR_SET_DUMPABLE, 1) < 0) {
            return errno;
        }
        return 0;
    });
    // A raw socket: CAP_NET_RAW in that namespace, which its owner has.
    Opened raw = openSocketAs(kOtherUser, kOtherGid, target.pid(), AF_INET, SOCK_RAW, IPPROTO_ICMP);
    ASSERT_EQ(errorOf(raw.reply), "") << raw.reply.dump();
    EXPECT_EQ(netnsCookie(raw.socket.get()), netnsCookieOf(target.pid()));
    // Not for another user, and not for the owner in a namespace it does not own.
    Opened stranger = openSocketAsUser(target.pid(), AF_INET, SOCK_RAW, IPPROTO_ICMP);
    EXPECT_EQ(errorOf(stranger.reply), "SocketFailed") << stranger.reply.dump();
    Child rootOwned = spawnNetworkTarget();
    Opened elsewhere =
        openSocketAs(kOtherUser, kOtherGid, rootOwned.pid(), AF_INET, SOCK_STREAM, 0);
    EXPECT_EQ(errorOf(elsewhere.reply), "AccessDenied") << elsewhere.reply.dump();
}

TEST_F(SocketTest, BadArgumentsAreNamed) {
    Child target = spawnNetworkTarget();
    struct Case {
        int family, type, protocol;
        const char* parameter;
    };
    for (const Case& c :
         {Case{99, SOCK_STREAM, 0, "family"}, Case{0, SOCK_STREAM, 0, "family"},
          Case{AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0, "type"},
          Case{AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0, "type"}, Case{AF_INET, 7, 0, "type"},
          Case{AF_INET, SOCK_STREAM, -1, "protocol"}}) {
        Opened opened = openSocketAsUser(target.pid(), c.family, c.type, c.protocol);
        EXPECT_EQ(errorOf(opened.reply), "InvalidArgument") << opened.reply.dump();
        EXPECT_EQ(opened.reply["parameters"]["parameter"], c.parameter) << opened.reply.dump();
        EXPECT_EQ(opened.fdCount, 0U);
    }
    // A protocol the family does not have: socket(2)'s own EPROTONOSUPPORT.
    Opened opened = openSocketAsUser(target.pid(), AF_INET, SOCK_STREAM, 200);
    EXPECT_EQ(errorOf(opened.reply), "SocketFailed") << opened.reply.dump();
    EXPECT_EQ(opened.reply["parameters"]["errno"], EPROTONOSUPPORT);
    // A target that has exited.
    target.release(0);
    target.awaitExit();
    Opened exited = openSocketAsUser(target.pid(), AF_INET, SOCK_STREAM);
    EXPECT_EQ(errorOf(exited.reply), "ProcessExited") << exited.reply.dump();
}

TEST_F(SocketTest, AThousandCallsThroughOneKeptWorkerLeaveNoFdInNsfddOrTheHelper) {
    Child target = spawnNetworkTarget();
    VarlinkConnection c(socket_);
    Json parameters = {
        {"pid", target.pid()}, {"family", AF_INET}, {"type", SOCK_STREAM}, {"protocol", 0}};
    ASSERT_EQ(c.call("org.nsfd1.Manager.OpenSocket", parameters).second.size(), 1U);
    pid_t helper = helperPid();
    ASSERT_GT(helper, 0);
    // A worker is kept for this caller and namespace while it is used; it goes
    // after a few idle seconds, and the helper's fds with it.
    auto awaitNoWorker = [&] {
        for (int i = 0; i < 1000 && !childrenOf(helper).empty(); ++i) {
            std::this_thread::sleep_for(10ms);
        }
        return childrenOf(helper).empty();
    };
    ASSERT_EQ(childrenOf(helper).size(), 1U) << "the kept worker";
    ASSERT_TRUE(awaitNoWorker()) << "the idle worker goes";
    int nsfddFds = daemon_->openFdCount(), helperFds = countFds(helper);
    pid_t worker = 0;
    for (int i = 0; i < 1000; ++i) {
        auto [reply, fds] = c.call("org.nsfd1.Manager.OpenSocket", parameters);
        ASSERT_EQ(fds.size(), 1U) << reply.dump();
        if (i == 0) {
            ASSERT_EQ(childrenOf(helper).size(), 1U);
            worker = childrenOf(helper)[0];
        }
    }
    EXPECT_EQ(childrenOf(helper), std::vector<pid_t>{worker}) << "one worker served them all";
    // Another caller gets a worker of its own; a worker killed (its caller
    // may: it is the caller's) is replaced at the next call.
    Opened other = openSocketAs(kUser, kUserGid, target.pid(), AF_INET, SOCK_STREAM, 0);
    EXPECT_EQ(other.fdCount, 1U) << other.reply.dump();
    EXPECT_EQ(childrenOf(helper).size(), 2U);
    ASSERT_EQ(::kill(worker, SIGKILL), 0);
    auto [replaced, replacedFds] = c.call("org.nsfd1.Manager.OpenSocket", parameters);
    EXPECT_EQ(replacedFds.size(), 1U) << replaced.dump();
    // The helper reaps it (within its second's turn).
    auto reaped = [&] {
        std::vector<pid_t> workers = childrenOf(helper);
        return std::count(workers.begin(), workers.end(), worker) == 0;
    };
    for (int i = 0; i < 300 && !reaped(); ++i) {
        std::this_thread::sleep_for(10ms);
    }
    EXPECT_TRUE(reaped());
    // A caller that hangs up before its answer.
    {
        VarlinkConnection gone(socket_);
        ASSERT_TRUE(gone.send("org.nsfd1.Manager.OpenSocket", parameters));
    }
    EXPECT_EQ(errorOf(c.call("org.nsfd1.Manager.OpenSocket", parameters).first), "");
    // nsfdd holds a connection to each worker it keeps, and closes it when
    // the worker has been idle a while; the worker ends with it.
    EXPECT_TRUE(awaitNoWorker()) << "no worker is left once idle";
    for (int i = 0; i < 200 && daemon_->openFdCount() > nsfddFds; ++i) {
        std::this_thread::sleep_for(10ms);
    }
    // Fewer: something of nsfdd's start, open when counted, has closed since.
    EXPECT_LE(daemon_->openFdCount(), nsfddFds);
    EXPECT_EQ(countFds(helper), helperFds);
    EXPECT_EQ(helperPid(), helper) << "one helper served them all";
}

// A worker runs as its caller, who may stop it: that holds up only that
// caller identity's calls, for the worker timeout, never another caller's.
TEST_F(SocketTest, AStoppedWorkerHoldsUpOnlyItsOwnCallerAndIsLetGo) {
    Child target = spawnNetworkTarget();
    VarlinkConnection c(socket_);
    Json parameters = {
        {"pid", target.pid()}, {"family", AF_INET}, {"type", SOCK_STREAM}, {"protocol", 0}};
    ASSERT_EQ(c.call("org.nsfd1.Manager.OpenSocket", parameters).second.size(), 1U);
    pid_t helper = helperPid();
    ASSERT_EQ(childrenOf(helper).size(), 1U);
    pid_t worker = childrenOf(helper)[0];
    ASSERT_EQ(::kill(worker, SIGSTOP), 0);
    ASSERT_TRUE(c.send("org.nsfd1.Manager.OpenSocket", parameters));
    // Another caller's socket comes while the stopped worker holds the first.
    Opened other = openSocketAs(kUser, kUserGid, target.pid(), AF_INET, SOCK_STREAM, 0);
    EXPECT_EQ(other.fdCount, 1U) << other.reply.dump();
    auto [reply, fds] = c.receive();
    EXPECT_EQ(errorOf(reply), "Failed") << reply.dump();
    EXPECT_NE(reply["parameters"]["message"].get<std::string>().find("did not answer"),
              std::string::npos)
        << reply.dump();
    EXPECT_TRUE(fds.empty());
    ASSERT_EQ(::kill(worker, SIGKILL), 0);
    // Let go, it is replaced at the next call.
    EXPECT_EQ(c.call("org.nsfd1.Manager.OpenSocket", parameters).second.size(), 1U);
}

TEST_F(SocketTest, TheHelperKilledMidCallGivesANamedErrorAndTheNextCallANewHelper) {
    Child target = spawnNetworkTarget();
    VarlinkConnection c(socket_);
    Json parameters = {
        {"pid", target.pid()}, {"family", AF_INET}, {"type", SOCK_STREAM}, {"protocol", 0}};
    ASSERT_EQ(c.call("org.nsfd1.Manager.OpenSocket", parameters).second.size(), 1U);
    int nsfddFds = daemon_->openFdCount();
    pid_t helper = helperPid();
    ASSERT_GT(helper, 0);
    // Stopped, it holds the request for a worker in another namespace (the
    // kept worker answers for the first without it); killed, it never answers.
    Child second = spawnNetworkTarget();
    Json elsewhere = parameters;
    elsewhere["pid"] = second.pid();
    ASSERT_EQ(::kill(helper, SIGSTOP), 0);
    ASSERT_TRUE(c.send("org.nsfd1.Manager.OpenSocket", elsewhere));
    {
        // Another caller is not held up meanwhile.
        VarlinkConnection other(socket_);
        EXPECT_EQ(errorOf(other.call("org.nsfd1.Manager.GetServiceInfo", Json::object()).first),
                  "");
    }
    ASSERT_EQ(::kill(helper, SIGKILL), 0);
    auto [reply, fds] = c.receive();
    EXPECT_EQ(errorOf(reply), "Failed") << reply.dump();
    EXPECT_NE(reply["parameters"]["message"].get<std::string>().find("nsfd-helper"),
              std::string::npos);
    EXPECT_TRUE(fds.empty());
    // nsfdd reaped it, and the next call starts another.
    EXPECT_NE(::kill(helper, 0), 0);
    EXPECT_EQ(c.call("org.nsfd1.Manager.OpenSocket", elsewhere).second.size(), 1U);
    pid_t next = helperPid();
    EXPECT_GT(next, 0);
    EXPECT_NE(next, helper);
    for (int i = 0; i < 200 && daemon_->openFdCount() > nsfddFds; ++i) {
        std::this_thread::sleep_for(10ms);
    }
    EXPECT_LE(daemon_->openFdCount(), nsfddFds);
}

// The D-Bus door: Manager.OpenSocket by pid and by pidfd, Process.OpenSocket,
// as the same user with the same grant, each socket the target's.
TEST_F(SocketTest, OverDBusByPidByPidFdAndOnTheProcessObject) {
    Child target = spawnNetworkTarget();
    std::uint64_t cookie = netnsCookieOf(target.pid());
    auto pid = static_cast<std::uint32_t>(target.pid());
    std::string path = manager_->TrackProcess(pid);
    std::string out = asUser(kUser, kUserGid, {}, [&](sdbus::IConnection& bus) {
        ManagerProxy manager(bus, false);
        ProcessProxy process(bus, path);
        PidFd pidfd = PidFd::open(target.pid());
        std::vector<sdbus::UnixFd> sockets;
        sockets.push_back(manager.OpenSocket(pid, AF_INET, SOCK_STREAM, 0));
        sockets.push_back(
            manager.OpenSocketByPidFd(sdbus::UnixFd(pidfd.get()), AF_INET6, SOCK_DGRAM, 0));
        sockets.push_back(process.OpenSocket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE));
        std::string result;
        for (const sdbus::UnixFd& socket : sockets) {
            result += netnsCookie(socket.get()) == cookie ? "target " : "elsewhere ";
        }
        result += connectToService(sockets[0].get()) == 0 ? "connected" : "refused";
        std::string raw = errorNameOf([&] { process.OpenSocket(AF_PACKET, SOCK_RAW, 0x0300); });
        std::string flags =
            errorNameOf([&] { process.OpenSocket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0); });
        return result + " " + raw + " " + flags;
    });
    EXPECT_EQ(out, std::string("target target target connected ") + err::kSocketFailed + " " +
                       err::kInvalidArgs);
    std::string other = asUser(kOtherUser, kOtherGid, {}, [&](sdbus::IConnection& bus) {
        ManagerProxy manager(bus, false);
        return errorNameOf([&] { manager.OpenSocket(pid, AF_INET, SOCK_STREAM, 0); });
    });
    EXPECT_EQ(other, err::kAccessDenied);
}

// A listening socket made inside the network namespace of `pid` (by a thread
// that entered it): it stays there.
UniqueFd listenIn(pid_t pid, int family, const sockaddr* address, socklen_t length) {
    UniqueFd listener;
    std::thread thread([&] {
        UniqueFd ns(::open(nsPath(pid, "net").c_str(), O_RDONLY | O_CLOEXEC));
        if (ns.ok() && ::setns(ns.get(), CLONE_NEWNET) == 0) {
            UniqueFd s(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
            if (::bind(s.get(), address, length) == 0 && ::listen(s.get(), 4) == 0) {
                listener = std::move(s);
            }
        }
    });
    thread.join();
    return listener;
}

// Accepts one connection, reads it to its end, answers "pong:" and what it read.
std::thread serveOnce(const UniqueFd& listener) {
    return std::thread([fd = listener.get()] {
        UniqueFd c(::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC));
        std::string got;
        char buffer[256];
        for (ssize_t n; (n = ::read(c.get(), buffer, sizeof(buffer))) > 0;) {
            got.append(buffer, static_cast<std::size_t>(n));
        }
        std::string answer = "pong:" + got;
        (void)!::write(c.get(), answer.data(), answer.size());
    });
}

// `input | nsfdctl ARGS` as uid/gid: {exit code, stdout then stderr}.
std::pair<int, std::string> nsfdctlAs(uid_t uid, gid_t gid, const std::string& input,
                                      const std::vector<std::string>& args) {
    std::string command = "printf '%s' \"$0\" | \"$@\" 2>&1";
    std::vector<std::string> argv = {"setpriv",
                                     "--reuid=" + std::to_string(uid),
                                     "--regid=" + std::to_string(gid),
                                     "--clear-groups",
                                     "sh",
                                     "-c",
                                     command,
                                     input,
                                     NSFD_TEST_NSFDCTL};
    argv.insert(argv.end(), args.begin(), args.end());
    auto [status, out] = run(argv);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

TEST_F(SocketTest, NsfdctlConnectTalksToAServiceInsideTheTargetsNamespace) {
    Child target = spawnNetworkTarget();
    std::string pid = std::to_string(target.pid());
    sockaddr_in tcp{};
    tcp.sin_family = AF_INET;
    tcp.sin_port = htons(kPort + 1);
    tcp.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    UniqueFd listener =
        listenIn(target.pid(), AF_INET, reinterpret_cast<sockaddr*>(&tcp), sizeof(tcp));
    ASSERT_TRUE(listener.ok());
    std::thread server = serveOnce(listener);
    auto [code, out] = nsfdctlAs(kUser, kUserGid, "ping",
                                 {"connect", pid, "tcp:127.0.0.1:" + std::to_string(kPort + 1)});
    server.join();
    EXPECT_EQ(code, 0) << out;
    EXPECT_EQ(out, "pong:ping");

    // An abstract name lives in one network namespace: the target's here.
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    std::string name = "nsfd-test-" + pid;
    name.copy(un.sun_path + 1, name.size());
    socklen_t length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
    UniqueFd abstract = listenIn(target.pid(), AF_UNIX, reinterpret_cast<sockaddr*>(&un), length);
    ASSERT_TRUE(abstract.ok());
    std::thread unixServer = serveOnce(abstract);
    auto [unixCode, unixOut] = nsfdctlAs(kUser, kUserGid, "hi", {"connect", pid, "unix:@" + name});
    unixServer.join();
    EXPECT_EQ(unixCode, 0) << unixOut;
    EXPECT_EQ(unixOut, "pong:hi");

    // Refused: exit 1 with the errno; not granted: 4; a bad address: 2.
    auto [refused, refusedOut] = nsfdctlAs(
        kUser, kUserGid, "", {"connect", pid, "tcp:127.0.0.1:" + std::to_string(kPort + 2)});
    EXPECT_EQ(refused, 1) << refusedOut;
    EXPECT_NE(refusedOut.find("Connection refused"), std::string::npos) << refusedOut;
    auto [denied, deniedOut] =
        nsfdctlAs(kOtherUser, kOtherGid, "", {"connect", pid, "tcp:127.0.0.1:4711"});
    EXPECT_EQ(denied, 4) << deniedOut;
    for (const char* bad : {"tcp:localhost:80", "tcp:127.0.0.1", "tcp:127.0.0.1:0", "sctp:1:2",
                            "unix:", "tcp:[::1:80"}) {
        EXPECT_EQ(nsfdctlAs(kUser, kUserGid, "", {"connect", pid, bad}).first, 2) << bad;
    }
}

}  // namespace
}  // namespace nsfd::test

namespace nsfd::test {
namespace {

// Over D-Bus, which vouches for a connection's uid but not its gid: a
// process that exec'd a setgid program after connecting, while its child
// keeps the connection, is not trusted as the caller (its gids are not one),
// so its child gets no socket made with the program's group.
TEST_F(SocketTest, ABusCallerWhoseProcessExecsASetgidProgramIsNotTrusted) {
    // sleep, setgid nsfd-test-b: what a setgid program of another group does to the egid.
    std::string setgidSleep = dir_->path() + "/setgid-sleep";
    ASSERT_TRUE(std::filesystem::copy_file("/bin/sleep", setgidSleep));
    ASSERT_EQ(::chown(setgidSleep.c_str(), 0, kOtherGid), 0);
    ASSERT_EQ(::chmod(setgidSleep.c_str(), 02755), 0);
    auto [status, out] =
        // NOLINTNEXTLINE(bugprone-suspicious-missing-comma): one path, joined on purpose
        run({"/usr/bin/python3", NSFD_TEST_SOURCE_DIR "/tests/integration/dbus_handoff.py",
             "setgid", busAddress(), std::to_string(kUser), std::to_string(kUserGid), setgidSleep});
    EXPECT_EQ(status, 0) << out;
    // Before: "ok", a socket made as nsfd-test-a with nsfd-test-b's gid.
    EXPECT_EQ(out, err::kForeignPidNamespace);
}

}  // namespace
}  // namespace nsfd::test

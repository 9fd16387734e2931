// SPDX-License-Identifier: LGPL-2.1-or-later
// A seeded fuzzer for nsfdd's D-Bus surface: random calls to random objects,
// interfaces and members with random arguments of random types (huge ones,
// fds of every kind), against the live daemon. Pass: every call is answered
// (a reply or a named error), the daemon stays up and stops cleanly, its fd
// count returns to where it was and its memory stays bounded.
//
// NSFD_FUZZ_ITERATIONS (default 3000) and NSFD_FUZZ_SEED (default: random,
// printed) steer it; README says how to run it for hours.
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <climits>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <random>
#include <set>

#include "fixture.hpp"

namespace nsfd::test {
namespace {

std::uint64_t envNumber(const char* name, std::uint64_t fallback) {
    const char* value = std::getenv(name);
    return value != nullptr ? std::strtoull(value, nullptr, 10) : fallback;
}

// The replies a well-behaved daemon may give to nonsense.
bool isExpectedError(const std::string& name) {
    static const std::set<std::string> expected = {
        err::kNoSuchProcess,
        err::kProcessExited,
        err::kNotTracked,
        err::kNotSupported,
        err::kLimitExceeded,
        err::kAccessDenied,
        err::kInvalidArgs,
        "org.freedesktop.DBus.Error.UnknownMethod",
        "org.freedesktop.DBus.Error.UnknownObject",
        "org.freedesktop.DBus.Error.UnknownInterface",
        "org.freedesktop.DBus.Error.UnknownProperty",
        "org.freedesktop.DBus.Error.PropertyReadOnly",
    };
    return expected.count(name) != 0;
}

class Fuzzer {
  public:
    // `processPaths`: tracked processes' objects; `otherPaths`: anything else.
    Fuzzer(std::uint64_t seed, std::vector<uint32_t> pids, std::vector<std::string> processPaths,
           std::vector<std::string> otherPaths, std::vector<int> fds)
        : rng_(seed),
          pids_(std::move(pids)),
          processPaths_(std::move(processPaths)),
          otherPaths_(std::move(otherPaths)),
          fds_(std::move(fds)) {}

    // One random call; "" if answered as expected, else what went wrong.
    std::string callOnce(sdbus::IConnection& connection) {
        struct Method {
            bool onProcess;  // a process object's, else the manager's
            const char* interface;
            const char* member;
            const char* signature;  // of its arguments, one character each ('a' is "as")
        };
        static const std::vector<Method> contract = {
            {false, dbus::kManagerInterface, "TrackProcess", "u"},
            {false, dbus::kManagerInterface, "TrackProcessByPidFd", "h"},
            {false, dbus::kManagerInterface, "UntrackProcess", "o"},
            {false, dbus::kManagerInterface, "GetProcess", "u"},
            {false, dbus::kManagerInterface, "ListProcesses", ""},
            {false, dbus::kManagerInterface, "GetNamespace", "us"},
            {false, dbus::kManagerInterface, "GetNamespaces", "ua"},
            {false, dbus::kManagerInterface, "GetProcessInfo", "u"},
            {true, dbus::kProcessInterface, "GetNamespace", "s"},
            {true, dbus::kProcessInterface, "GetNamespaces", "a"},
            {true, dbus::kProcessInterface, "GetNamespaceIds", ""},
            {true, dbus::kProcessInterface, "GetInfo", ""},
            {true, dbus::kProcessInterface, "GetPidFd", ""},
            {true, dbus::kProcessInterface, "SendSignal", "i"},
            {true, dbus::kProcessInterface, "GetFd", "i"},
            {true, dbus::kProcessInterface, "Untrack", ""},
            {false, "org.freedesktop.DBus.Properties", "Get", "ss"},
            {true, "org.freedesktop.DBus.Properties", "GetAll", "s"},
            {false, "org.freedesktop.DBus.Properties", "Set", "ssv"},
            {true, "org.freedesktop.DBus.Introspectable", "Introspect", ""},
            {false, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects", ""},
            {false, "org.freedesktop.DBus.Peer", "Ping", ""},
        };
        // Mostly a real method with arguments of its types; sometimes the
        // wrong object, types or count; sometimes nothing real at all.
        const Method& method = pick(contract);
        std::string path = method.onProcess ? pick(processPaths_) : dbus::kManagerPath;
        std::string interface = method.interface;
        std::string member = method.member;
        std::string signature = method.signature;
        switch (below(10)) {
            case 0:
                path = pick(otherPaths_);
                break;
            case 1:
                signature = randomSignature();
                break;
            case 2:
                signature.resize(below(signature.size() + 1));
                break;
            case 3:
                signature += randomSignature();
                break;
            case 4:
                interface = "org.nsfd1.NoSuchInterface";
                break;
            case 5:
                member = randomMemberName();
                break;
            default:
                break;
        }
        auto proxy = sdbus::createProxy(connection, dbus::kBusName, path);
        try {
            sdbus::MethodCall call = proxy->createMethodCall(interface, member);
            for (char type : signature) {
                append(call, type);
            }
            proxy->callMethod(call, 5'000'000);  // 5 s: an answer must come
            ++outcomes_["reply"];
        } catch (const sdbus::Error& e) {
            ++outcomes_[e.getName()];
            if (!isExpectedError(e.getName())) {
                return path + " " + interface + "." + member + "(" + signature +
                       "): " + e.getName() + ": " + e.getMessage();
            }
        }
        return "";
    }

    // How often each answer came: "reply" or an error name.
    const std::map<std::string, int>& outcomes() const { return outcomes_; }

  private:
    std::uint64_t below(std::uint64_t n) {
        return std::uniform_int_distribution<std::uint64_t>(0, n - 1)(rng_);
    }

    template <typename T>
    const T& pick(const std::vector<T>& from) {
        return from[below(from.size())];
    }

    std::string randomString(std::size_t maxLength) {
        static const std::vector<std::string> words = {
            "net",
            "mnt",
            "pid",
            "pid_for_children",
            "time",
            "time_for_children",
            "user",
            "uts",
            "ipc",
            "cgroup",
            "",
            "NET",
            "net\t",
            "Version",
            "TrackedProcesses",
            "KernelFeatures",
            "State",
            "Pid",
            "ExitStatus",
        };
        if (below(2) == 0) {
            return pick(words);
        }
        std::string text(below(maxLength + 1), ' ');
        for (char& c : text) {
            c = static_cast<char>(' ' + below(95));  // printable ASCII: valid UTF-8
        }
        return text;
    }

    // Well-formed (the bus drops a client that sends a malformed name), but unknown.
    std::string randomMemberName() {
        static const std::string letters =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_0123456789";
        std::string name(1 + below(12), 'X');
        for (std::size_t i = 1; i < name.size(); ++i) {
            name[i] = letters[below(letters.size())];
        }
        return name;
    }

    uint32_t randomPid() {
        // Never a random real pid: a fuzzed SendSignal must not reach a bystander.
        static const std::vector<uint32_t> odd = {0, UINT32_MAX, uint32_t{INT_MAX} + 1, 4194305};
        return below(3) == 0 ? pick(odd) : pick(pids_);
    }

    std::string randomSignature() {
        static const std::string types = "usaihovbtdx";
        std::string signature(below(4), ' ');
        for (char& type : signature) {
            type = types[below(types.size())];
        }
        return signature;
    }

    // One argument of D-Bus type `type` ('a': an array of strings), random in value.
    void append(sdbus::MethodCall& call, char type) {
        switch (type) {
            case 'u':
                call << randomPid();
                break;
            case 'i':
                call << static_cast<int32_t>(below(80)) - 10;
                break;  // signals, fds
            case 't':
                call << static_cast<uint64_t>(rng_());
                break;
            case 'x':
                call << static_cast<int64_t>(rng_());
                break;
            case 'b':
                call << (below(2) == 1);
                break;
            case 'd':
                call << 3.5;
                break;
            case 's':
                call << randomString(below(50) == 0 ? 1 << 20 : 64);
                break;  // to 1 MiB
            case 'o':
                call << sdbus::ObjectPath(below(2) == 0 ? pick(processPaths_) : pick(otherPaths_));
                break;
            case 'h':
                call << sdbus::UnixFd(pick(fds_));
                break;  // dup()ed into the message
            case 'v':
                call << sdbus::Variant(below(2) == 0 ? sdbus::Variant(randomPid())
                                                     : sdbus::Variant(randomString(8)));
                break;
            default: {
                std::vector<std::string> names(below(below(20) == 0 ? 20000 : 12));
                for (std::string& name : names) {
                    name = randomString(16);
                }
                call << names;
                break;
            }
        }
    }

    std::mt19937_64 rng_;
    std::vector<uint32_t> pids_;
    std::vector<std::string> processPaths_;
    std::vector<std::string> otherPaths_;
    std::vector<int> fds_;
    std::map<std::string, int> outcomes_;
};

class BusFuzzTest : public DaemonTest {};

TEST_F(BusFuzzTest, RandomCallsAreAnsweredAndLeaveNothingBehind) {
    std::uint64_t iterations = envNumber("NSFD_FUZZ_ITERATIONS", 3000);
    std::uint64_t seed = envNumber("NSFD_FUZZ_SEED", std::random_device{}());
    std::cerr << "bus fuzz: seed " << seed << ", " << iterations
              << " calls (NSFD_FUZZ_SEED=" << seed << " repeats them)\n";
    RecordProperty("seed", std::to_string(seed));

    // Targets: a running child, one in new namespaces, one tracked then reaped.
    Child running = Child::spawn();
    Child isolated = Child::spawn({}, {CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC});
    Child gone = Child::spawn();
    std::vector<uint32_t> pids;
    std::vector<std::string> processPaths;
    std::vector<std::string> otherPaths = {
        dbus::kManagerPath,     "/",
        "/org/nsfd1/process",   "/org/nsfd1/process/1",
        "/org/nsfd1/process/x", "/org/nsfd1/process/18446744073709551615",
        "/org/nsfd1/elsewhere"};
    for (Child* child : {&running, &isolated, &gone}) {
        pids.push_back(static_cast<uint32_t>(child->pid()));
        processPaths.push_back(manager_->TrackProcess(pids.back()));
    }
    PidFd gonePidFd = PidFd::open(gone.pid());
    gone.release(3);
    gone.reap();

    // Fds of every kind to pass.
    int pipeFds[2], sockets[2];
    ASSERT_EQ(::pipe2(pipeFds, O_CLOEXEC), 0);
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sockets), 0);
    UniqueFd pipeRead(pipeFds[0]), pipeWrite(pipeFds[1]), socketA(sockets[0]), socketB(sockets[1]);
    UniqueFd memfd(::memfd_create("fuzz", MFD_CLOEXEC));
    UniqueFd event(::eventfd(0, EFD_CLOEXEC));
    NsFd otherNet = PidFd::open(isolated.pid()).namespaceFd(NsType::Net);
    PidFd runningPidFd = PidFd::open(running.pid());
    std::vector<int> fds = {pipeRead.get(), socketA.get(),      memfd.get(),    event.get(),
                            otherNet.get(), runningPidFd.get(), gonePidFd.get()};

    Fuzzer fuzzer(seed, pids, processPaths, otherPaths, fds);
    // Warm up, then take the baseline.
    for (int i = 0; i < 200; ++i) {
        fuzzer.callOnce(*connection_);
    }
    int fdsBefore = daemon_->openFdCount();
    long rssBefore = rssKiB(daemon_->pid());

    std::vector<std::string> unexpected;
    for (std::uint64_t i = 0; i < iterations; ++i) {
        std::string problem = fuzzer.callOnce(*connection_);
        if (!problem.empty()) {
            unexpected.push_back(problem);
            if (unexpected.size() >= 10) {
                break;
            }
        }
    }
    for (const auto& [answer, count] : fuzzer.outcomes()) {
        std::cerr << "bus fuzz: " << count << " x " << answer << '\n';
    }
    for (const std::string& problem : unexpected) {
        ADD_FAILURE() << "seed " << seed << ": " << problem;
    }
    EXPECT_EQ(manager_->Get(dbus::kManagerInterface, "Version").get<std::string>(),
              NSFD_TEST_VERSION)
        << "nsfdd stopped answering:\n"
        << daemon_->log();

    // Untrack what the calls left tracked; then nothing may be held but what was.
    for (const auto& entry : manager_->ListProcesses()) {
        manager_->UntrackProcess(entry.get<2>());
    }
    waitUntil([&] { return manager_->ListProcesses().empty(); });
    waitUntil([&] { return daemon_->openFdCount() <= fdsBefore; });
    EXPECT_LE(daemon_->openFdCount(), fdsBefore);
    long rssAfter = rssKiB(daemon_->pid());
    std::cerr << "bus fuzz: nsfdd RSS " << rssBefore << " KiB before, " << rssAfter
              << " KiB after\n";
    // The allocator keeps some of what a 1 MiB argument needed; it must not keep growing.
    // (Not under ASan, whose quarantine holds freed memory back on purpose.)
    EXPECT_TRUE(NSFD_TEST_SANITIZED || rssAfter <= rssBefore + 8 * 1024)
        << "nsfdd grew by " << rssAfter - rssBefore << " KiB";
    // The children may be stopped by a fuzzed signal: their destructors kill and reap them.
}

}  // namespace
}  // namespace nsfd::test

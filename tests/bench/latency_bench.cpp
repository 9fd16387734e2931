// SPDX-License-Identifier: LGPL-2.1-or-later
// Median latency of nsfdd's GetNamespace next to a Ping to the bus daemon, in
// one run. Run it as the user you want authorized (e.g. a non-root user: it asks
// for its own net namespace, which the kernel rule allows), pinned to one CPU
// together with the bus and nsfdd (scripts/bench-latency does all that).
#include <unistd.h>

#include <sdbus-c++/sdbus-c++.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <vector>

namespace {

double medianMicros(int count, const std::function<void()>& call) {
    std::vector<double> samples;
    samples.reserve(static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i) {
        auto start = std::chrono::steady_clock::now();
        call();
        auto end = std::chrono::steady_clock::now();
        samples.push_back(std::chrono::duration<double, std::micro>(end - start).count());
    }
    std::nth_element(samples.begin(), samples.begin() + count / 2, samples.end());
    return samples[static_cast<std::size_t>(count / 2)];
}

}  // namespace

int main(int argc, char** argv) {
    int count = argc > 1 ? std::atoi(argv[1]) : 20000;
    auto connection = sdbus::createSystemBusConnection();
    auto bus = sdbus::createProxy(*connection, "org.freedesktop.DBus", "/org/freedesktop/DBus");
    auto nsfd = sdbus::createProxy(*connection, "org.nsfd1", "/org/nsfd1");
    auto self = static_cast<uint32_t>(::getpid());
    auto ping = [&] { bus->callMethod("Ping").onInterface("org.freedesktop.DBus.Peer"); };
    auto getNamespace = [&] {
        sdbus::UnixFd fd;
        nsfd->callMethod("GetNamespace")
            .onInterface("org.nsfd1.Manager")
            .withArguments(self, std::string("net"))
            .storeResultsTo(fd);
    };
    // The floor of any call to nsfdd: a property read that does no work.
    auto getVersion = [&] {
        (void)nsfd->getProperty("Version").onInterface("org.nsfd1.Manager").get<std::string>();
    };
    // Warm up every path (caller cache, allocations).
    medianMicros(500, ping);
    medianMicros(500, getVersion);
    medianMicros(500, getNamespace);
    double pingUs = medianMicros(count, ping);
    double versionUs = medianMicros(count, getVersion);
    double nsUs = medianMicros(count, getNamespace);
    std::printf("uid %u, %d calls each\n", ::getuid(), count);
    std::printf("Ping (bus daemon)       median %7.1f us\n", pingUs);
    std::printf("Version property (nsfdd) median %6.1f us  (a call that does nothing)\n",
                versionUs);
    std::printf("GetNamespace (nsfdd)    median %7.1f us\n", nsUs);
    std::printf("ratio GetNamespace/Ping        %7.2f\n", nsUs / pingUs);
    return 0;
}

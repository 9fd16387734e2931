// SPDX-License-Identifier: LGPL-2.1-or-later
// libFuzzer: the Varlink stream decoder. The input is a byte stream cut into
// reads at points the input itself chooses, some reads with fds attached. The
// decoder must not crash, must keep its bounds, must give every fd to exactly
// one call or close it, and what it accepts must survive encoding again.
// simdjson, which reads the JSON, is Debian's uninstrumented library: this
// fuzzes nsfd's decoder around it, not simdjson itself (fuzzed upstream).
#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "varlink/codec.hpp"

namespace varlink = nsfd::varlink;

namespace {

// The lowest free fd number: any fd left open by an input takes it.
int lowestFreeFd() {
    int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    ::close(fd);
    return fd;
}

void check(bool condition) {
    if (!condition) {
        std::abort();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const int lowestAtStart = lowestFreeFd();
    varlink::DecodeLimits limits;
    limits.maxMessageBytes = 1024;
    limits.maxDepth = 8;
    limits.maxFdsPerMessage = 2;
    std::string_view input(reinterpret_cast<const char*>(data), size);
    {
        varlink::Decoder decoder(limits);
        // First byte of each read: low 5 bits + 1 its length, top 2 bits fds
        // (0-3) to attach; the rest of the input is the stream.
        while (!input.empty()) {
            auto control = static_cast<unsigned char>(input.front());
            input.remove_prefix(1);
            std::size_t length = std::min<std::size_t>((control & 0x1f) + 1, input.size());
            if (length == 0) {
                break;
            }
            std::vector<nsfd::UniqueFd> fds;
            for (unsigned i = 0; i < (control >> 6); ++i) {
                fds.emplace_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
            }
            decoder.feed(input.substr(0, length), std::move(fds), (control & 0x20) != 0);
            input.remove_prefix(length);
            while (std::optional<varlink::Decoded> decoded = decoder.next()) {
                auto* call = std::get_if<varlink::CallMessage>(&*decoded);
                if (call == nullptr) {
                    check(decoder.failed());
                    continue;
                }
                check(varlink::isValidMethodName(call->method));
                check(call->fds.size() <= limits.maxFdsPerMessage);
                check(call->fdLoss == varlink::FdLoss::None || call->fds.empty());
                check(!(call->oneway && call->more));
                std::string again = varlink::encodeCall(call->method, call->parameters.toJson(),
                                                        call->more, call->oneway);
                check(again.back() == '\0');
                varlink::Decoded redecoded = varlink::decodeCall(
                    std::string_view(again).substr(0, again.size() - 1), limits);
                auto* same = std::get_if<varlink::CallMessage>(&redecoded);
                check(same != nullptr && same->method == call->method &&
                      same->parameters == call->parameters);
            }
        }
    }
    check(lowestFreeFd() == lowestAtStart);
    return 0;
}

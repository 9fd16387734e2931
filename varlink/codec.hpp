// SPDX-License-Identifier: LGPL-2.1-or-later
// The Varlink wire format: JSON objects, each ended by a NUL byte, on an AF_UNIX
// stream socket, with file descriptors (systemd's extension) sent as SCM_RIGHTS
// along with the first byte of the message whose JSON refers to them by index.
// No I/O and no event loop here: a decoder is fed what recvmsg(2) returned.
//
// Which message received fds belong to, as sd-varlink decides it
// (src/libsystemd/sd-varlink/sd-varlink.c, varlink_read and varlink_clear_current):
// **the fds a recvmsg(2) returned belong to the message whose first byte is the
// first byte of that read**; later messages in the same read have none, and fds
// that come with a read starting inside a message break the protocol (sd-varlink:
// EPROTO; here MisplacedFds). So a call with fds followed by plain calls in one
// write is read as sd-varlink's own clients (varlinkctl --push-fd) mean it.
// The cost, which sd-varlink shares (systemd#43823): the kernel may glue a write
// without fds in front of a later write with fds into one read, and the fds then
// go to the earlier message. A sender avoids it by not putting a message with fds
// behind bytes the peer has not read yet: libnsfd-client never has two calls
// outstanding on a connection, so neither its calls nor nsfdd's replies to it
// can be glued that way.
#pragma once

#include <cstddef>
#include <deque>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "nsfd/unique_fd.hpp"
#include "varlink/parameters.hpp"

namespace nsfd::varlink {

struct DecodeLimits {
    // nsfd's largest call (GetNamespaces with all ten types) is under 300 bytes;
    // 64 KiB leaves room for new methods and bounds each connection's input
    // buffer (systemd's generic 16 MiB is sized for user records, not for us).
    std::size_t maxMessageBytes = 64 * 1024;
    // Objects and arrays nested deeper than this are refused while parsing, before
    // they are built; an empty {} or [] does not count. nsfd's calls nest three
    // deep ({"parameters":{"types":["net"]}}).
    unsigned maxDepth = 16;
    // A call carries at most one fd today (TrackProcess's pidfd).
    std::size_t maxFdsPerMessage = 8;
};

// Why input was refused. Every value but TooManyFds ends the connection: after
// it nobody can tell where the next message starts or which fds belong to it.
enum class DecodeError {
    MessageTooLarge,   // no NUL within maxMessageBytes
    InvalidJson,       // not JSON, not UTF-8, or a number decodeCall does not take
    TooDeep,           // nesting beyond maxDepth
    NotAnObject,       // a JSON value that is not an object
    InvalidMethod,     // "method" missing, not a string, or not "iface.Method"
    InvalidField,      // "parameters" not an object, or a flag not a bool
    UnknownField,      // a top-level key the protocol does not define
    ConflictingFlags,  // "oneway" together with "more" or "upgrade"
    MisplacedFds,      // fds that arrived with a byte that does not start a message
    TooManyFds,        // more than maxFdsPerMessage fds: refused, the fds closed
};

// What became of the fds sent with a message, beyond those it has.
enum class FdLoss {
    None,
    TooMany,  // more than maxFdsPerMessage came: all are closed
    // The kernel could not install them all in the receiving process (MSG_CTRUNC
    // with room for the kernel's maximum: RLIMIT_NOFILE or the system's file
    // limit reached). The receiver's limit, not the sender's fault.
    NotReceived,
};

// "MessageTooLarge", ...: the names tests and logs use.
const char* toString(DecodeError error) noexcept;

// One method call as it came off the wire.
struct CallMessage {
    std::string method;  // "org.nsfd1.Manager.GetNamespace"
    Parameters parameters;
    bool oneway = false;
    bool more = false;
    bool upgrade = false;
    std::vector<UniqueFd> fds;     // those sent with the message, by index
    FdLoss fdLoss = FdLoss::None;  // not None: `fds` is empty, those sent are closed
};

// One reply as it came off the wire, for clients.
struct ReplyMessage {
    Json parameters = Json::object();
    std::optional<std::string> error;  // the error's name, when it is one
    bool continues = false;            // more replies to the same call follow
    std::vector<UniqueFd> fds;         // those sent with the message, by index
    FdLoss fdLoss = FdLoss::None;      // not None: `fds` is empty, those sent are closed
};

template <typename Message>
using DecodedAs = std::variant<Message, DecodeError>;
using Decoded = DecodedAs<CallMessage>;
using DecodedReply = DecodedAs<ReplyMessage>;

// Parses one message (without its NUL) into a call. JSON as RFC 8259, except
// numbers: an integer (no fraction, no exponent) must fit an int64 or a
// uint64, any other number must be a finite double; the rest is InvalidJson.
// A non-negative integer becomes an unsigned Json number. Within the
// parameters a repeated key keeps its last value; at the top level each
// occurrence is checked. Safe from any thread; each thread keeps a parser the
// size of the largest message it read, up to 64 KiB (beyond that it is let go
// after the message). Throws only std::bad_alloc; everything wrong with the
// text is a DecodeError.
Decoded decodeCall(std::string_view text, const DecodeLimits& limits);
// Parses one message into a reply: "parameters", "error", "continues" and
// vendor keys (with a dot) only. As decodeCall otherwise.
DecodedReply decodeReply(std::string_view text, const DecodeLimits& limits);

// Parses one message into a JSON object with the depth limit; nullopt and
// `error` set if it is not one. As decodeCall otherwise. For test clients.
std::optional<Json> parseObject(std::string_view text, unsigned maxDepth, DecodeError& error);

// True for "interface.Method" as varlink.org defines the two names.
bool isValidMethodName(std::string_view name) noexcept;
bool isValidInterfaceName(std::string_view name) noexcept;

// Splits a byte stream into messages: calls (Decoder, nsfdd's side) or
// replies (ReplyDecoder, a client's). Feed it each recvmsg(2) result in order;
// take what it decoded with next(). After a fatal error it yields that error
// and ignores (and closes) everything fed after.
template <typename Message>
class MessageDecoder {
  public:
    explicit MessageDecoder(DecodeLimits limits = {}) : limits_(limits) {}

    // `bytes` and the fds that came with them, from one recvmsg(2);
    // `fdsNotReceived`: the kernel could not install all of them (MSG_CTRUNC).
    // The fds go to the message starting at `bytes`' first byte (the rule above).
    void feed(std::string_view bytes, std::vector<UniqueFd> fds, bool fdsNotReceived = false);

    std::optional<DecodedAs<Message>> next();
    bool hasNext() const noexcept { return !ready_.empty(); }
    bool failed() const noexcept { return failed_; }
    // Bytes of a message whose NUL has not come yet.
    bool midMessage() const noexcept { return !partial_.empty() || partialHasFds_; }

  private:
    void fail(DecodeError error);
    void finishMessage(std::string_view text, std::vector<UniqueFd> fds, FdLoss fdLoss);

    DecodeLimits limits_;
    std::string partial_;
    std::vector<UniqueFd> partialFds_;
    bool partialHasFds_ = false;
    FdLoss partialFdLoss_ = FdLoss::None;
    std::deque<DecodedAs<Message>> ready_;
    bool failed_ = false;
};

using Decoder = MessageDecoder<CallMessage>;
using ReplyDecoder = MessageDecoder<ReplyMessage>;

// Replies, each ended by its NUL, ready for the socket.
std::string encodeReply(const Json& parameters, bool continues = false);
std::string encodeError(std::string_view name, const Json& parameters = Json::object());
// A call, for clients and tests.
std::string encodeCall(std::string_view method, const Json& parameters, bool more = false,
                       bool oneway = false);

}  // namespace nsfd::varlink

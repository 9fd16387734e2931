// SPDX-License-Identifier: LGPL-2.1-or-later
#include "varlink/codec.hpp"

#include <simdjson.h>

#include <algorithm>
#include <cstdint>
#include <new>
#include <optional>
#include <utility>

namespace nsfd::varlink {

const char* toString(DecodeError error) noexcept {
    switch (error) {
        case DecodeError::MessageTooLarge:
            return "MessageTooLarge";
        case DecodeError::InvalidJson:
            return "InvalidJson";
        case DecodeError::TooDeep:
            return "TooDeep";
        case DecodeError::NotAnObject:
            return "NotAnObject";
        case DecodeError::InvalidMethod:
            return "InvalidMethod";
        case DecodeError::InvalidField:
            return "InvalidField";
        case DecodeError::UnknownField:
            return "UnknownField";
        case DecodeError::ConflictingFlags:
            return "ConflictingFlags";
        case DecodeError::MisplacedFds:
            return "MisplacedFds";
        case DecodeError::TooManyFds:
            return "TooManyFds";
    }
    return "Unknown";
}

namespace {

bool isAlpha(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool isAlnum(char c) {
    return isAlpha(c) || (c >= '0' && c <= '9');
}

// The JSON reader of every message, both ways: simdjson, one parser per
// thread, reused, so that a message costs no allocation once the largest has
// been seen. nlohmann's lexer alone was most of a small call's time in nsfdd
// (BENCHMARKS.md, figure 11b). Json (nlohmann) stays the type of the values
// that calls (Parameters) and replies carry, and what writes them.
class Reader {
  public:
    // The message's top-level object, valid until this thread's next parse or
    // trim(); nullopt with `error` set if the text is not one JSON object
    // nested at most `maxDepth` deep. Throws std::bad_alloc.
    std::optional<simdjson::dom::object> parse(std::string_view text, unsigned maxDepth,
                                               DecodeError& error) {
        // simdjson counts the document itself as a level, and an empty object
        // or array not at all.
        std::size_t depth = std::size_t{maxDepth} + 1;
        if (parser_.max_depth() != depth || parser_.capacity() < text.size()) {
            // Doubling up to what is kept, so that growing messages do not
            // reallocate each time; exact beyond it (trim() lets it go).
            std::size_t capacity =
                std::max(text.size(), std::min(2 * parser_.capacity(), kKeptCapacity));
            if (parser_.allocate(capacity, depth) != simdjson::SUCCESS) {
                throw std::bad_alloc();
            }
        }
        // simdjson reads up to SIMDJSON_PADDING bytes past the text.
        padded_.clear();
        padded_.reserve(text.size() + simdjson::SIMDJSON_PADDING);
        padded_.append(text);
        padded_.append(simdjson::SIMDJSON_PADDING, '\0');
        simdjson::dom::element root;
        simdjson::error_code code =
            parser_.parse(padded_.data(), text.size(), /*realloc_if_needed=*/false).get(root);
        if (code == simdjson::MEMALLOC) {
            throw std::bad_alloc();  // nsfd's own shortage, not the peer's fault
        }
        if (code != simdjson::SUCCESS) {
            // Not JSON, not UTF-8, or a number simdjson does not hold (codec.hpp).
            error = code == simdjson::DEPTH_ERROR ? DecodeError::TooDeep : DecodeError::InvalidJson;
            return std::nullopt;
        }
        simdjson::dom::object object;
        if (root.get(object) != simdjson::SUCCESS) {
            error = DecodeError::NotAnObject;
            return std::nullopt;
        }
        return object;
    }

    // Lets a parser grown by one large message go, rather than keep it for the
    // thread's life: simdjson holds about 15 bytes per byte of capacity, and a
    // client takes replies of up to 16 MiB.
    void trim() {
        if (parser_.capacity() > kKeptCapacity) {
            parser_ = simdjson::dom::parser();
            padded_ = std::string();
        }
    }

  private:
    // nsfdd's largest call (DecodeLimits' default): about 1 MiB kept per thread.
    static constexpr std::size_t kKeptCapacity = 64 * 1024;

    simdjson::dom::parser parser_;
    std::string padded_;
};

// Parses `text` and returns `use(object)`, the object being valid only inside
// `use`; a text that is not one JSON object returns its DecodeError.
template <typename Result, typename Use>
Result readObject(std::string_view text, unsigned maxDepth, Use use) {
    thread_local Reader reader;
    DecodeError error{};
    std::optional<simdjson::dom::object> object = reader.parse(text, maxDepth, error);
    Result result = object ? use(*object) : Result(error);
    reader.trim();
    return result;
}

Json toJson(simdjson::dom::object object);

// A non-negative integer becomes unsigned, as nlohmann's parser made it (-0
// too: simdjson reads it as 0); a repeated key keeps its last value. The
// depth is bounded by the parse. Each case reads the type it was told.
Json toJson(simdjson::dom::element value) {
    switch (value.type()) {
        case simdjson::dom::element_type::OBJECT:
            return toJson(value.get_object().value_unsafe());
        case simdjson::dom::element_type::ARRAY: {
            Json array = Json::array();
            simdjson::dom::array items = value.get_array().value_unsafe();
            for (simdjson::dom::element item : items) {
                array.push_back(toJson(item));
            }
            return array;
        }
        case simdjson::dom::element_type::STRING:
            return std::string(value.get_string().value_unsafe());
        case simdjson::dom::element_type::INT64: {
            std::int64_t number = value.get_int64().value_unsafe();
            return number >= 0 ? Json(static_cast<std::uint64_t>(number)) : Json(number);
        }
        case simdjson::dom::element_type::UINT64:
            return value.get_uint64().value_unsafe();
        case simdjson::dom::element_type::DOUBLE:
            return value.get_double().value_unsafe();
        case simdjson::dom::element_type::BOOL:
            return value.get_bool().value_unsafe();
        case simdjson::dom::element_type::NULL_VALUE:
            return nullptr;
    }
    return nullptr;
}

Json toJson(simdjson::dom::object object) {
    Json json = Json::object();
    for (auto [key, member] : object) {
        json[std::string(key)] = toJson(member);
    }
    return json;
}

// A message's flag ("oneway", "more", "upgrade", "continues"): a bool, or null
// for false; nullopt if it is anything else.
std::optional<bool> flagOf(simdjson::dom::element value) {
    bool set = false;
    if (value.is_null()) {
        return false;
    }
    if (value.get(set) != simdjson::SUCCESS) {
        return std::nullopt;
    }
    return set;
}

// A call's parameters: one vector of members, each value Json.
Parameters parametersOf(simdjson::dom::object object) {
    std::vector<Parameters::Member> members;
    members.reserve(object.size());
    for (auto [key, value] : object) {
        members.emplace_back(std::string(key), toJson(value));
    }
    return Parameters(std::move(members));
}

// Read from simdjson's document directly: only the parameters are copied out,
// once the message is known to be a call.
Decoded callOf(simdjson::dom::object message) {
    std::optional<std::string_view> method;
    simdjson::dom::object parameters;
    bool hasParameters = false;
    bool oneway = false;
    bool more = false;
    bool upgrade = false;
    for (auto [key, value] : message) {
        if (key == "method") {
            std::string_view name;
            if (value.get(name) != simdjson::SUCCESS || !isValidMethodName(name)) {
                return DecodeError::InvalidMethod;
            }
            method = name;
        } else if (key == "parameters") {
            hasParameters = value.is_object();
            if (hasParameters) {
                parameters = value.get_object().value_unsafe();
            } else if (!value.is_null()) {
                return DecodeError::InvalidField;
            }
        } else if (key == "oneway" || key == "more" || key == "upgrade") {
            std::optional<bool> set = flagOf(value);
            if (!set) {
                return DecodeError::InvalidField;
            }
            (key == "oneway" ? oneway : key == "more" ? more : upgrade) = *set;
        } else if (key.find('.') == std::string_view::npos) {
            // varlink.org: vendor extensions are keys in reverse-domain notation;
            // anything else is a mistake worth reporting (as sd-varlink does).
            return DecodeError::UnknownField;
        }
    }
    if (!method) {
        return DecodeError::InvalidMethod;
    }
    if (oneway && (more || upgrade)) {
        return DecodeError::ConflictingFlags;
    }
    return CallMessage{.method = std::string(*method),
                       .parameters = hasParameters ? parametersOf(parameters) : Parameters(),
                       .oneway = oneway,
                       .more = more,
                       .upgrade = upgrade,
                       .fds = {},
                       .fdLoss = FdLoss::None};
}

DecodedReply replyOf(simdjson::dom::object message) {
    ReplyMessage reply;
    for (auto [key, value] : message) {
        if (key == "parameters") {
            if (value.is_object()) {
                reply.parameters = toJson(value);
            } else if (!value.is_null()) {
                return DecodeError::InvalidField;
            }
        } else if (key == "error") {
            std::string_view name;
            if (value.get(name) != simdjson::SUCCESS || !isValidMethodName(name)) {
                return DecodeError::InvalidField;
            }
            reply.error = std::string(name);
        } else if (key == "continues") {
            std::optional<bool> set = flagOf(value);
            if (!set) {
                return DecodeError::InvalidField;
            }
            reply.continues = *set;
        } else if (key.find('.') == std::string_view::npos) {
            return DecodeError::UnknownField;
        }
    }
    return reply;
}

}  // namespace

// varlink.org: [A-Za-z]([-]*[A-Za-z0-9])* ( \. [A-Za-z0-9]([-]*[A-Za-z0-9])* )+
bool isValidInterfaceName(std::string_view name) noexcept {
    if (name.empty() || name.size() > 255 || !isAlpha(name.front())) {
        return false;
    }
    int segments = 1;
    bool segmentStart = false;
    for (std::size_t i = 1; i < name.size(); ++i) {
        char c = name[i];
        if (c == '.') {
            if (segmentStart || name[i - 1] == '-') {
                return false;
            }
            segmentStart = true;
            ++segments;
        } else if (c == '-') {
            if (segmentStart) {
                return false;
            }
        } else if (isAlnum(c)) {
            segmentStart = false;
        } else {
            return false;
        }
    }
    return segments >= 2 && !segmentStart && name.back() != '-';
}

// "interface.Method", the method name being [A-Z][A-Za-z0-9]*.
bool isValidMethodName(std::string_view name) noexcept {
    std::size_t dot = name.rfind('.');
    if (dot == std::string_view::npos || dot + 1 >= name.size()) {
        return false;
    }
    std::string_view method = name.substr(dot + 1);
    if (method.front() < 'A' || method.front() > 'Z') {
        return false;
    }
    for (char c : method) {
        if (!isAlnum(c)) {
            return false;
        }
    }
    return isValidInterfaceName(name.substr(0, dot));
}

std::optional<Json> parseObject(std::string_view text, unsigned maxDepth, DecodeError& error) {
    auto parsed = readObject<std::variant<Json, DecodeError>>(
        text, maxDepth, [](simdjson::dom::object object) { return toJson(object); });
    if (auto* failed = std::get_if<DecodeError>(&parsed)) {
        error = *failed;
        return std::nullopt;
    }
    return std::move(std::get<Json>(parsed));
}

Decoded decodeCall(std::string_view text, const DecodeLimits& limits) {
    return readObject<Decoded>(text, limits.maxDepth, callOf);
}

DecodedReply decodeReply(std::string_view text, const DecodeLimits& limits) {
    return readObject<DecodedReply>(text, limits.maxDepth, replyOf);
}

namespace {

DecodedAs<CallMessage> decodeAs(std::string_view text, const DecodeLimits& limits, CallMessage*) {
    return decodeCall(text, limits);
}
DecodedAs<ReplyMessage> decodeAs(std::string_view text, const DecodeLimits& limits, ReplyMessage*) {
    return decodeReply(text, limits);
}

}  // namespace

template <typename Message>
void MessageDecoder<Message>::fail(DecodeError error) {
    failed_ = true;
    partial_.clear();
    partial_.shrink_to_fit();
    partialFds_.clear();
    ready_.emplace_back(error);
}

// `fds` is moved into the message (clang-tidy 14 misses the move in this template).
template <typename Message>
// NOLINTNEXTLINE(performance-unnecessary-value-param)
void MessageDecoder<Message>::finishMessage(std::string_view text, std::vector<UniqueFd> fds,
                                            FdLoss fdLoss) {
    DecodedAs<Message> decoded = decodeAs(text, limits_, static_cast<Message*>(nullptr));
    if (auto* error = std::get_if<DecodeError>(&decoded)) {
        fail(*error);
        return;
    }
    auto& message = std::get<Message>(decoded);
    message.fds = std::move(fds);
    message.fdLoss = fdLoss;
    ready_.push_back(std::move(decoded));
}

template <typename Message>
void MessageDecoder<Message>::feed(std::string_view bytes, std::vector<UniqueFd> fds,
                                   bool fdsNotReceived) {
    if (failed_) {
        return;  // `fds` close here
    }
    // sd-varlink's rule (codec.hpp): fds go to the message this read starts.
    bool withFds = !fds.empty() || fdsNotReceived;
    if (withFds) {
        if (!partial_.empty() || partialHasFds_) {
            fail(DecodeError::MisplacedFds);
            return;
        }
        partialHasFds_ = true;
        partialFdLoss_ = fdsNotReceived                          ? FdLoss::NotReceived
                         : fds.size() > limits_.maxFdsPerMessage ? FdLoss::TooMany
                                                                 : FdLoss::None;
        if (partialFdLoss_ != FdLoss::None) {
            fds.clear();
        }
        partialFds_ = std::move(fds);
    }
    std::size_t pos = 0;
    while (pos < bytes.size()) {
        std::size_t nul = bytes.find('\0', pos);
        std::size_t length = (nul == std::string_view::npos ? bytes.size() : nul) - pos;
        if (partial_.size() + length > limits_.maxMessageBytes) {
            fail(DecodeError::MessageTooLarge);
            return;
        }
        if (nul == std::string_view::npos) {
            partial_.append(bytes.substr(pos));
            return;
        }
        std::string_view text = bytes.substr(pos, length);
        if (!partial_.empty()) {
            partial_.append(text);
            text = partial_;
        }
        finishMessage(text, std::move(partialFds_), partialFdLoss_);
        partial_.clear();
        partialFds_.clear();
        partialHasFds_ = false;
        partialFdLoss_ = FdLoss::None;
        if (failed_) {
            return;
        }
        pos = nul + 1;
    }
}

template <typename Message>
std::optional<DecodedAs<Message>> MessageDecoder<Message>::next() {
    if (ready_.empty()) {
        return std::nullopt;
    }
    DecodedAs<Message> front = std::move(ready_.front());
    ready_.pop_front();
    return front;
}

template class MessageDecoder<CallMessage>;
template class MessageDecoder<ReplyMessage>;

namespace {

std::string finish(const Json& message) {
    std::string out = message.dump(-1, ' ', false, Json::error_handler_t::replace);
    out.push_back('\0');
    return out;
}

Json asObject(const Json& parameters) {
    return parameters.is_object() ? parameters : Json::object();
}

void appendJson(std::string& out, const Json& value) {
    out += value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// {"parameters":{...}} with `before` ("key":value, pairs that sort before
// "parameters") ahead of it, as Json would order the keys, and its NUL: the
// parameters written where they are, not copied into an enclosing object.
std::string withParameters(std::string_view before, const Json& parameters) {
    std::string out;
    out.reserve(64);  // a reply to most calls, in one allocation
    out += '{';
    out += before;
    out += "\"parameters\":";
    if (parameters.is_object()) {
        appendJson(out, parameters);
    } else {
        out += "{}";
    }
    out += "}";
    out.push_back('\0');
    return out;
}

}  // namespace

std::string encodeReply(const Json& parameters, bool continues) {
    return withParameters(continues ? "\"continues\":true," : "", parameters);
}

std::string encodeError(std::string_view name, const Json& parameters) {
    std::string before = "\"error\":";
    appendJson(before, Json(std::string(name)));
    return withParameters(before + ",", parameters);
}

std::string encodeCall(std::string_view method, const Json& parameters, bool more, bool oneway) {
    Json message = {{"method", std::string(method)}, {"parameters", asObject(parameters)}};
    if (more) {
        message["more"] = true;
    }
    if (oneway) {
        message["oneway"] = true;
    }
    return finish(message);
}

}  // namespace nsfd::varlink

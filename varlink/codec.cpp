// SPDX-License-Identifier: LGPL-2.1-or-later
#include "varlink/codec.hpp"

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

// Whether `text` has more than `maxDepth` objects and arrays open at once. It
// sees strings where a JSON parser does, up to where the text stops being
// JSON and the parser stops: so no parser goes deeper than this counts.
bool nestsDeeperThan(std::string_view text, unsigned maxDepth) noexcept {
    unsigned depth = 0;
    bool inString = false;
    bool escaped = false;
    for (char c : text) {
        if (inString) {
            if (escaped) {
                escaped = false;
            } else if (c == '\\') {
                escaped = true;
            } else if (c == '"') {
                inString = false;
            }
        } else if (c == '"') {
            inString = true;
        } else if (c == '{' || c == '[') {
            if (++depth > maxDepth) {
                return true;
            }
        } else if ((c == '}' || c == ']') && depth > 0) {
            --depth;
        }
    }
    return false;
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
    // Counted before anything is built, in one pass: a parser callback, run on
    // every value, made the parse a quarter slower.
    if (nestsDeeperThan(text, maxDepth)) {
        error = DecodeError::TooDeep;
        return std::nullopt;
    }
    Json value = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
    if (value.is_discarded()) {
        error = DecodeError::InvalidJson;
        return std::nullopt;
    }
    if (!value.is_object()) {
        error = DecodeError::NotAnObject;
        return std::nullopt;
    }
    return value;
}

Decoded decodeCall(std::string_view text, const DecodeLimits& limits) {
    DecodeError error{};
    std::optional<Json> object = parseObject(text, limits.maxDepth, error);
    if (!object) {
        return error;
    }
    CallMessage call;
    bool haveMethod = false;
    for (auto& [key, value] : object->items()) {
        if (key == "method") {
            if (!value.is_string() || !isValidMethodName(value.get_ref<const std::string&>())) {
                return DecodeError::InvalidMethod;
            }
            call.method = std::move(value.get_ref<std::string&>());
            haveMethod = true;
        } else if (key == "parameters") {
            if (value.is_object()) {
                call.parameters = std::move(value);
            } else if (!value.is_null()) {
                return DecodeError::InvalidField;
            }
        } else if (key == "oneway" || key == "more" || key == "upgrade") {
            if (!value.is_boolean() && !value.is_null()) {
                return DecodeError::InvalidField;
            }
            bool set = value.is_boolean() && value.get<bool>();
            (key == "oneway" ? call.oneway : key == "more" ? call.more : call.upgrade) = set;
        } else if (key.find('.') == std::string::npos) {
            // varlink.org: vendor extensions are keys in reverse-domain notation;
            // anything else is a mistake worth reporting (as sd-varlink does).
            return DecodeError::UnknownField;
        }
    }
    if (!haveMethod) {
        return DecodeError::InvalidMethod;
    }
    if (call.oneway && (call.more || call.upgrade)) {
        return DecodeError::ConflictingFlags;
    }
    return call;
}

DecodedReply decodeReply(std::string_view text, const DecodeLimits& limits) {
    DecodeError error{};
    std::optional<Json> object = parseObject(text, limits.maxDepth, error);
    if (!object) {
        return error;
    }
    ReplyMessage reply;
    for (auto& [key, value] : object->items()) {
        if (key == "parameters") {
            if (value.is_object()) {
                reply.parameters = std::move(value);
            } else if (!value.is_null()) {
                return DecodeError::InvalidField;
            }
        } else if (key == "error") {
            if (!value.is_string() || !isValidMethodName(value.get_ref<const std::string&>())) {
                return DecodeError::InvalidField;
            }
            reply.error = value.get<std::string>();
        } else if (key == "continues") {
            if (!value.is_boolean() && !value.is_null()) {
                return DecodeError::InvalidField;
            }
            reply.continues = value.is_boolean() && value.get<bool>();
        } else if (key.find('.') == std::string::npos) {
            return DecodeError::UnknownField;
        }
    }
    return reply;
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

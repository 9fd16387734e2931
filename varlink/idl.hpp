// SPDX-License-Identifier: LGPL-2.1-or-later
// The Varlink interface definition language (varlink.org, "Interface
// Definition"), parsed so that a server can check every call against the
// method's signature before its handler runs, as systemd's sd-varlink does
// (varlink_idl_validate_method_call): unknown fields, missing fields and
// wrong types are refused with org.varlink.service.InvalidParameter naming the
// parameter. The IDL file is the only description of a method: nothing here
// or in a handler lists parameters again.
//
// Beyond varlink.org, the comments systemd's IDL printer writes before a
// method are read as its flags: "# [Requires 'more' flag]" (a stream that
// needs "more") and "# [Supports 'more' flag]" (a stream that allows it).
// A method with neither does not stream.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "varlink/codec.hpp"

namespace nsfd::varlink::idl {

struct Type;

struct Field {
    std::string name;
    std::shared_ptr<const Type> type;
};

struct Type {
    enum class Kind { Bool, Int, Float, String, Object, Enum, Struct, Named, Array, Map };
    Kind kind = Kind::Object;
    bool nullable = false;                // "?T": null, or absent as a field
    std::vector<std::string> enumValues;  // Enum
    std::vector<Field> fields;            // Struct
    std::string name;                     // Named: a type of the same interface
    std::shared_ptr<const Type> element;  // Array ("[]T"), Map ("[string]T")
};

enum class More {
    None,      // does not stream: a call with "more" is refused
    Supports,  // "# [Supports 'more' flag]"
    Requires,  // "# [Requires 'more' flag]": a call without "more" is refused
};

struct Method {
    std::string name;  // "GetNamespace", without the interface
    std::vector<Field> input;
    std::vector<Field> output;
    More more = More::None;
};

struct Interface {
    std::string name;  // "org.nsfd1.Manager"
    std::map<std::string, Type, std::less<>> types;
    std::map<std::string, Method, std::less<>> methods;
    std::map<std::string, std::vector<Field>, std::less<>> errors;

    const Method* method(std::string_view name) const noexcept;
};

// Malformed IDL: what and on which line (1-based). A programming error in a
// service's own description; thrown by parse() when the server starts.
class ParseError : public std::runtime_error {
  public:
    ParseError(unsigned line, const std::string& what);
    unsigned line() const noexcept { return line_; }

  private:
    unsigned line_;
};

// Parses one interface's description. Every named type a member uses must be
// defined in it. Throws ParseError.
Interface parse(std::string_view text);

// Checks a call's "parameters" object against `method`'s input: every field
// declared, every non-nullable field present and not null, every value of its
// type (enum values among those listed, named types resolved in `interface`).
// Returns the name of the first top-level parameter that fails, or nullopt if
// the call is valid. Never throws.
std::optional<std::string> checkInput(const Interface& interface, const Method& method,
                                      const Parameters& parameters) noexcept;

}  // namespace nsfd::varlink::idl

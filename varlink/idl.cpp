// SPDX-License-Identifier: LGPL-2.1-or-later
#include "varlink/idl.hpp"

#include <algorithm>
#include <cctype>
#include <functional>

namespace nsfd::varlink::idl {

namespace {

constexpr std::string_view kRequiresMore = "[Requires 'more' flag]";
constexpr std::string_view kSupportsMore = "[Supports 'more' flag]";

bool isNameChar(char c) noexcept {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '.' || c == '-';
}

// A recursive-descent parser over the text; comments count only for the
// "more" flags of the method that follows them.
class Parser {
  public:
    explicit Parser(std::string_view text) : text_(text) {}

    Interface parseInterface() {
        expectWord("interface");
        Interface interface;
        interface.name = name("an interface name");
        if (!isValidInterfaceName(interface.name)) {
            fail("invalid interface name '" + interface.name + "'");
        }
        comments_.clear();
        while (!atEnd()) {  // which keeps the comments before the next member
            std::string keyword = name("'type', 'method' or 'error'");
            std::string member = name("a member name");
            if (keyword == "type") {
                Type type = parseType();
                if (type.kind != Type::Kind::Struct && type.kind != Type::Kind::Enum) {
                    fail("type " + member + " is neither a struct nor an enum");
                }
                define(interface.types, member, std::move(type));
            } else if (keyword == "method") {
                Method method;
                method.name = member;
                method.more = moreFlag();
                method.input = parseStruct();
                expect("->");
                method.output = parseStruct();
                define(interface.methods, member, std::move(method));
            } else if (keyword == "error") {
                define(interface.errors, member, parseStruct());
            } else {
                fail("unknown keyword '" + keyword + "'");
            }
            comments_.clear();
        }
        resolve(interface);
        return interface;
    }

  private:
    [[noreturn]] void fail(const std::string& what) const { throw ParseError(line_, what); }

    // Skips blanks and comments, keeping the comments' text.
    void skip() {
        while (pos_ < text_.size()) {
            char c = text_[pos_];
            if (c == '\n') {
                ++line_;
                ++pos_;
            } else if (std::isspace(static_cast<unsigned char>(c)) != 0) {
                ++pos_;
            } else if (c == '#') {
                std::size_t end = text_.find('\n', pos_);
                end = end == std::string_view::npos ? text_.size() : end;
                comments_.emplace_back(text_.substr(pos_ + 1, end - pos_ - 1));
                pos_ = end;
            } else {
                return;
            }
        }
    }

    bool atEnd() {
        skip();
        return pos_ >= text_.size();
    }

    bool peek(std::string_view token) {
        skip();
        return text_.substr(pos_, token.size()) == token;
    }

    bool accept(std::string_view token) {
        if (!peek(token)) {
            return false;
        }
        pos_ += token.size();
        return true;
    }

    void expect(std::string_view token) {
        if (!accept(token)) {
            fail("expected '" + std::string(token) + "'");
        }
    }

    std::string name(const char* what) {
        skip();
        std::size_t start = pos_;
        while (pos_ < text_.size() && isNameChar(text_[pos_])) {
            ++pos_;
        }
        if (pos_ == start) {
            fail(std::string("expected ") + what);
        }
        return std::string(text_.substr(start, pos_ - start));
    }

    void expectWord(std::string_view word) {
        if (name("a keyword") != word) {
            fail("expected '" + std::string(word) + "'");
        }
    }

    More moreFlag() const {
        for (const std::string& comment : comments_) {
            if (comment.find(kRequiresMore) != std::string::npos) {
                return More::Requires;
            }
            if (comment.find(kSupportsMore) != std::string::npos) {
                return More::Supports;
            }
        }
        return More::None;
    }

    // "(" then fields "name: type" or enum values, separated by commas, ")".
    Type parseStructOrEnum() {
        expect("(");
        Type type;
        type.kind = Type::Kind::Struct;
        if (accept(")")) {
            return type;
        }
        std::string first = name("a field name or an enum value");
        if (peek(":")) {
            type.fields = parseFieldsFrom(std::move(first));
        } else {
            type.kind = Type::Kind::Enum;
            type.enumValues.push_back(std::move(first));
            while (accept(",")) {
                type.enumValues.push_back(name("an enum value"));
            }
            expect(")");
        }
        return type;
    }

    std::vector<Field> parseFieldsFrom(std::string first) {
        std::vector<Field> fields;
        std::string fieldName = std::move(first);
        while (true) {
            expect(":");
            if (std::any_of(fields.begin(), fields.end(),
                            [&](const Field& f) { return f.name == fieldName; })) {
                fail("field '" + fieldName + "' declared twice");
            }
            fields.push_back({fieldName, std::make_shared<const Type>(parseType())});
            if (accept(")")) {
                return fields;
            }
            expect(",");
            fieldName = name("a field name");
        }
    }

    std::vector<Field> parseStruct() {
        Type type = parseStructOrEnum();
        if (type.kind != Type::Kind::Struct) {
            fail("expected a struct of fields");
        }
        return std::move(type.fields);
    }

    Type parseType() {
        bool nullable = accept("?");
        Type type;
        if (accept("[]")) {
            type.kind = Type::Kind::Array;
            type.element = std::make_shared<const Type>(parseType());
        } else if (accept("[")) {
            expectWord("string");
            expect("]");
            type.kind = Type::Kind::Map;
            type.element = std::make_shared<const Type>(parseType());
        } else if (peek("(")) {
            type = parseStructOrEnum();
        } else {
            std::string word = name("a type");
            static const std::map<std::string_view, Type::Kind> kBuiltins{
                {"bool", Type::Kind::Bool},     {"int", Type::Kind::Int},
                {"float", Type::Kind::Float},   {"string", Type::Kind::String},
                {"object", Type::Kind::Object},
            };
            auto builtin = kBuiltins.find(word);
            if (builtin != kBuiltins.end()) {
                type.kind = builtin->second;
            } else if (std::isupper(static_cast<unsigned char>(word[0])) != 0) {
                type.kind = Type::Kind::Named;
                type.name = std::move(word);
            } else {
                fail("unknown type '" + word + "'");
            }
        }
        if (nullable && type.nullable) {
            fail("a type may be made nullable once");
        }
        type.nullable = nullable;
        return type;
    }

    template <typename Map, typename Value>
    void define(Map& map, const std::string& member, Value value) {
        if (!map.emplace(member, std::move(value)).second) {
            fail("'" + member + "' defined twice");
        }
    }

    // Every named type used is defined.
    void resolve(const Interface& interface) const {
        std::function<void(const Type&)> check = [&](const Type& type) {
            if (type.kind == Type::Kind::Named && interface.types.count(type.name) == 0) {
                throw ParseError(0, "type '" + type.name + "' is used but not defined");
            }
            for (const Field& field : type.fields) {
                check(*field.type);
            }
            if (type.element) {
                check(*type.element);
            }
        };
        auto checkFields = [&](const std::vector<Field>& fields) {
            for (const Field& field : fields) {
                check(*field.type);
            }
        };
        for (const auto& [name, type] : interface.types) {
            check(type);
        }
        for (const auto& [name, method] : interface.methods) {
            checkFields(method.input);
            checkFields(method.output);
        }
        for (const auto& [name, fields] : interface.errors) {
            checkFields(fields);
        }
    }

    std::string_view text_;
    std::size_t pos_ = 0;
    unsigned line_ = 1;
    std::vector<std::string> comments_;  // since the last member began
};

bool matches(const Interface& interface, const Type& type, const Json& value);

// (name, value) pairs of a call's parameters, or of a Json object within them.
const Parameters& membersOf(const Parameters& parameters) {
    return parameters;
}
auto membersOf(const Json& object) {
    return object.items();
}

// Every field of `fields` in `object` (Parameters, or a Json object) and
// nothing else; the first field to blame in `bad`.
template <typename Object>
bool matchesFields(const Interface& interface, const std::vector<Field>& fields,
                   const Object& object, std::string* bad) {
    for (const auto& [key, value] : membersOf(object)) {
        auto field = std::find_if(fields.begin(), fields.end(),
                                  [&key = key](const Field& f) { return f.name == key; });
        if (field == fields.end() || !matches(interface, *field->type, value)) {
            if (bad != nullptr) {
                *bad = key;
            }
            return false;
        }
    }
    for (const Field& field : fields) {
        if (!field.type->nullable && !object.contains(field.name)) {
            if (bad != nullptr) {
                *bad = field.name;
            }
            return false;
        }
    }
    return true;
}

bool matches(const Interface& interface, const Type& type, const Json& value) {
    if (value.is_null()) {
        return type.nullable;
    }
    switch (type.kind) {
        case Type::Kind::Bool:
            return value.is_boolean();
        case Type::Kind::Int:
            return value.is_number_integer();
        case Type::Kind::Float:
            return value.is_number();
        case Type::Kind::String:
            return value.is_string();
        case Type::Kind::Object:
            return value.is_object();
        case Type::Kind::Enum:
            return value.is_string() &&
                   std::find(type.enumValues.begin(), type.enumValues.end(),
                             value.get_ref<const std::string&>()) != type.enumValues.end();
        case Type::Kind::Struct:
            return value.is_object() && matchesFields(interface, type.fields, value, nullptr);
        case Type::Kind::Named: {
            auto named = interface.types.find(type.name);
            return named != interface.types.end() && matches(interface, named->second, value);
        }
        case Type::Kind::Array:
            return value.is_array() &&
                   std::all_of(value.begin(), value.end(), [&](const Json& element) {
                       return matches(interface, *type.element, element);
                   });
        case Type::Kind::Map:
            return value.is_object() &&
                   std::all_of(value.begin(), value.end(), [&](const Json& element) {
                       return matches(interface, *type.element, element);
                   });
    }
    return false;
}

}  // namespace

const Method* Interface::method(std::string_view name) const noexcept {
    auto it = methods.find(name);
    return it == methods.end() ? nullptr : &it->second;
}

ParseError::ParseError(unsigned line, const std::string& what)
    : std::runtime_error(line == 0
                             ? "Invalid Varlink IDL: " + what
                             : "Invalid Varlink IDL, line " + std::to_string(line) + ": " + what),
      line_(line) {}

Interface parse(std::string_view text) {
    return Parser(text).parseInterface();
}

std::optional<std::string> checkInput(const Interface& interface, const Method& method,
                                      const Parameters& parameters) noexcept {
    try {
        std::string bad;
        if (matchesFields(interface, method.input, parameters, &bad)) {
            return std::nullopt;
        }
        return bad;
    } catch (...) {  // std::bad_alloc while copying a name
        return std::string();
    }
}

}  // namespace nsfd::varlink::idl

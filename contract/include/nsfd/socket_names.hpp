// SPDX-License-Identifier: LGPL-2.1-or-later
// The names of socket(2)'s families and types in nsfd's contract: the AF_ and
// SOCK_ constants without the prefix, in lower case ("inet", "stream"). One
// spelling each: nsfdd.conf's `sockets` grants, polkit's `family` and `type`
// details, and nsfdctl's messages use exactly these.
#pragma once

#include <optional>
#include <string_view>

namespace nsfd {

struct SocketName {
    int value;
    std::string_view name;
};

// Linux's address families (include/linux/socket.h), AF_UNIX to AF_MCTP.
inline constexpr SocketName kSocketFamilies[] = {
    {1, "unix"},        {2, "inet"},     {3, "ax25"},     {4, "ipx"},       {5, "appletalk"},
    {6, "netrom"},      {7, "bridge"},   {8, "atmpvc"},   {9, "x25"},       {10, "inet6"},
    {11, "rose"},       {12, "decnet"},  {13, "netbeui"}, {14, "security"}, {15, "key"},
    {16, "netlink"},    {17, "packet"},  {18, "ash"},     {19, "econet"},   {20, "atmsvc"},
    {21, "rds"},        {22, "sna"},     {23, "irda"},    {24, "pppox"},    {25, "wanpipe"},
    {26, "llc"},        {27, "ib"},      {28, "mpls"},    {29, "can"},      {30, "tipc"},
    {31, "bluetooth"},  {32, "iucv"},    {33, "rxrpc"},   {34, "isdn"},     {35, "phonet"},
    {36, "ieee802154"}, {37, "caif"},    {38, "alg"},     {39, "nfc"},      {40, "vsock"},
    {41, "kcm"},        {42, "qipcrtr"}, {43, "smc"},     {44, "xdp"},      {45, "mctp"},
};

// socket(2)'s types, without the SOCK_NONBLOCK and SOCK_CLOEXEC flags.
inline constexpr SocketName kSocketTypes[] = {
    {1, "stream"},    {2, "dgram"}, {3, "raw"},     {4, "rdm"},
    {5, "seqpacket"}, {6, "dccp"},  {10, "packet"},
};

namespace detail {
template <std::size_t N>
constexpr std::optional<std::string_view> nameIn(const SocketName (&table)[N], int value) noexcept {
    for (const SocketName& entry : table) {
        if (entry.value == value) {
            return entry.name;
        }
    }
    return std::nullopt;
}
template <std::size_t N>
constexpr std::optional<int> valueIn(const SocketName (&table)[N], std::string_view name) noexcept {
    for (const SocketName& entry : table) {
        if (entry.name == name) {
            return entry.value;
        }
    }
    return std::nullopt;
}
}  // namespace detail

// "inet" for AF_INET; nullopt for a number that names no family.
constexpr std::optional<std::string_view> socketFamilyName(int family) noexcept {
    return detail::nameIn(kSocketFamilies, family);
}
constexpr std::optional<int> socketFamilyOf(std::string_view name) noexcept {
    return detail::valueIn(kSocketFamilies, name);
}
// "stream" for SOCK_STREAM; nullopt for anything else (flags included).
constexpr std::optional<std::string_view> socketTypeName(int type) noexcept {
    return detail::nameIn(kSocketTypes, type);
}
constexpr std::optional<int> socketTypeOf(std::string_view name) noexcept {
    return detail::valueIn(kSocketTypes, name);
}

}  // namespace nsfd

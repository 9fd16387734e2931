// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

namespace nsfd {

// Sole owner of one file descriptor. Move-only; closes on destruction.
// There is deliberately no conversion to int or bool: say get() or ok().
class UniqueFd {
  public:
    UniqueFd() noexcept = default;
    explicit UniqueFd(int fd) noexcept : fd_(fd) {}
    ~UniqueFd() { reset(); }

    UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
    UniqueFd& operator=(UniqueFd&& other) noexcept {
        if (this != &other) {
            reset(other.release());
        }
        return *this;
    }
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;

    // `if (!fd)` reads like a validity test but would compare the number; use ok().
    bool operator!() const = delete;

    int get() const noexcept { return fd_; }
    bool ok() const noexcept { return fd_ >= 0; }

    // Gives up ownership; the caller must close the returned fd.
    [[nodiscard]] int release() noexcept {
        int fd = fd_;
        fd_ = -1;
        return fd;
    }

    // Closes the held fd (if any) and takes `fd`. errno is preserved, so this
    // is safe on error paths that still want to report errno.
    void reset(int fd = -1) noexcept;

    // A new fd for the same open file description, close-on-exec, >= 3.
    // Throws std::system_error on failure.
    UniqueFd duplicate() const;

  private:
    int fd_ = -1;
};

// A close-on-exec duplicate (>= 3) of an fd the caller does not own.
// Throws std::system_error on failure.
UniqueFd duplicateFd(int fd);

}  // namespace nsfd

# Run by the build (target nsfd-include-check, CMakeLists.txt): fails if a C or
# C++ source of ours includes by a path that climbs out of its folder ("../")
# or by an absolute one. Such a path would bypass the per-layer include
# directories (nsfd_layer_include), the one thing that keeps daemon/core from
# including an endpoint and lib/ from including anything of ours.
# Usage: cmake -DTOP=<source dir> -DSTAMP=<file to touch> -P CheckIncludes.cmake
set(folders lib contract varlink dbus client helper daemon cli examples tests)
set(globs)
foreach(folder IN LISTS folders)
  foreach(ext c h cpp hpp in)
    list(APPEND globs "${TOP}/${folder}/*.${ext}")
  endforeach()
endforeach()
file(GLOB_RECURSE sources LIST_DIRECTORIES false RELATIVE "${TOP}" ${globs})
set(found "")
foreach(source IN LISTS sources)
  file(STRINGS "${TOP}/${source}" includes REGEX "^[ \t]*#[ \t]*include[ \t]*[\"<]")
  foreach(line IN LISTS includes)
    if(line MATCHES "include[ \t]*[\"<]([^\">]*)[\">]")
      set(path "${CMAKE_MATCH_1}")
      if(path MATCHES "(^|/)\\.\\.(/|$)" OR path MATCHES "^/")
        string(APPEND found "\n  ${source}: ${line}")
      endif()
    endif()
  endforeach()
endforeach()
if(found)
  message(FATAL_ERROR
    "Includes by a relative path out of the folder, or an absolute one, bypass the "
    "per-layer include directories: include a layer's header by its layer name "
    "(\"nsfd/pidfd.hpp\", \"core/manager.hpp\") and link that layer's target, "
    "if the layering allows it (README.md, \"Layout\"):${found}")
endif()
file(TOUCH "${STAMP}")

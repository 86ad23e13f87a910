# deps.cmake - find every library through pkg-config; a missing one stops
# configure and names the Debian 12 package that provides it.
find_package(PkgConfig)
find_package(Threads REQUIRED)
if(NOT PKG_CONFIG_FOUND)
  message(FATAL_ERROR "pkg-config not found: apt-get install -y pkg-config")
endif()

# vs_dep(NAME MODULE DEBIAN_PACKAGE) -> imported target PkgConfig::NAME
macro(vs_dep name module debpkg)
  pkg_check_modules(${name} QUIET IMPORTED_TARGET ${module})
  if(NOT ${name}_FOUND)
    message(FATAL_ERROR "missing dependency ${module}: apt-get install -y ${debpkg}")
  endif()
endmacro()

vs_dep(UV libuv libuv1-dev)
vs_dep(NATS libnats libnats-dev)
vs_dep(PROTOBUFC libprotobuf-c libprotobuf-c-dev)
vs_dep(SECCOMP libseccomp libseccomp-dev)
vs_dep(SODIUM libsodium libsodium-dev)
vs_dep(LMDB lmdb liblmdb-dev)
vs_dep(YAML yaml-0.1 libyaml-dev)
vs_dep(JANSSON jansson libjansson-dev)
vs_dep(CRYPTO libcrypto libssl-dev)
vs_dep(HS libhs libhyperscan-dev)   # the scanners' pattern matching
vs_dep(PCRE2 libpcre2-8 libpcre2-dev) # confirmation of a Hyperscan hit
vs_dep(CURL libcurl libcurl4-openssl-dev) # egress: URL parsing (and the fetcher)
vs_dep(ARCHIVE libarchive libarchive-dev) # sandboxd: OCI image layers

find_program(PROTOC_C protoc-c)
if(NOT PROTOC_C)
  message(FATAL_ERROR "missing protoc-c: apt-get install -y protobuf-c-compiler")
endif()

if(VS_BUILD_TESTS)
  vs_dep(CMOCKA cmocka libcmocka-dev)
  vs_dep(SQLITE sqlite3 libsqlite3-dev) # the ledger benchmark's baseline
  find_program(NATS_SERVER nats-server PATHS /usr/sbin /usr/local/sbin)
  if(NOT NATS_SERVER)
    message(FATAL_ERROR "missing nats-server (tests start a real one): apt-get install -y nats-server")
  endif()
endif()
